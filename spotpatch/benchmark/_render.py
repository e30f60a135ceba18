"""Rendering one image of the bundled benchmark: background, objects placed apart, effects.

Every image is drawn from its own RNG, seeded by ``[seed, task_index, split_index, image_index]``,
so the output is byte-identical for a given seed whatever the process count or the subset of
tasks written. Objects never touch or hide each other, and each box is tight around the pixels
drawn for its object. Imports from ``benchmark._shapes``, ``_backgrounds`` and ``_tasks``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from PIL import Image

from spotpatch.benchmark._backgrounds import BACKGROUNDS, IMAGE_SIZE, distractors, pick_colour
from spotpatch.benchmark._shapes import shape_mask
from spotpatch.benchmark._tasks import STYLES

__all__ = ["Box", "Rendered", "RenderedObject", "render_image", "render_job"]

_MAX_IOU = 0.15
_GAP = 2  # px kept free around every object, so that no object touches or hides another
_PLACEMENT_TRIES = 40
_PNG_LEVEL = 1  # zlib level 6 halves the encoding speed for 15% smaller files

Box = tuple[int, int, int, int]  # x, y, w, h in pixels


@dataclass(frozen=True)
class RenderedObject:
    """One object of a rendered image."""

    category_id: int
    bbox: Box
    mask: np.ndarray  # (H, W) bool: the pixels drawn for this object


@dataclass(frozen=True)
class Rendered:
    """A rendered image with what it is made of: the checks of tight boxes read these."""

    image: np.ndarray  # (H, W, 3) uint8, as saved
    background: np.ndarray  # (H, W, 3) float32, before any object was drawn
    composite: np.ndarray  # (H, W, 3) float32, objects drawn, before the photometric effects
    objects: list[RenderedObject]


def _dilate(mask: np.ndarray, g: int) -> np.ndarray:
    """Grows ``mask`` by ``g`` px on every side; the result is ``2 g`` px larger each way."""
    h, w = mask.shape
    rows = np.zeros((h, w + 2 * g), dtype=bool)
    for d in range(2 * g + 1):
        rows[:, d : d + w] |= mask
    out = np.zeros((h + 2 * g, w + 2 * g), dtype=bool)
    for d in range(2 * g + 1):
        out[d : d + h] |= rows
    return out


def _boxes_clash(a: Box, b: Box) -> bool:
    """Whether two boxes overlap too much, or one sits mostly inside the other.

    The second test keeps small objects out of the holes of rings and outlines.
    """
    iw = min(a[0] + a[2], b[0] + b[2]) - max(a[0], b[0])
    ih = min(a[1] + a[3], b[1] + b[3]) - max(a[1], b[1])
    if iw <= 0 or ih <= 0:
        return False
    inter, area_a, area_b = iw * ih, a[2] * a[3], b[2] * b[3]
    return inter >= _MAX_IOU * (area_a + area_b - inter) or inter >= 0.5 * min(area_a, area_b)


def render_image(seed: int, task_index: int, split_index: int, image_index: int) -> Rendered:
    """Renders one image of the benchmark from its own RNG.

    Args:
        seed: Benchmark seed.
        task_index: 0 for the source set, ``i + 1`` for ``BENCHMARK_TASKS[i]``.
        split_index: Position of the split in train, val(, test).
        image_index: Position of the image in its split.

    Returns:
        The image, its background, and every object with its tight box and mask.
    """
    rng = np.random.default_rng([seed, task_index, split_index, image_index])
    style = STYLES[task_index]
    bg = BACKGROUNDS[style.backgrounds[rng.integers(len(style.backgrounds))]](rng)
    if style.desaturate:
        # Grey-ish backgrounds, so that only the objects carry the red/blue signal.
        lum = bg.mean(axis=2, keepdims=True)
        bg = lum + 0.15 * (bg - lum)
    if style.distractors:
        bg = distractors(bg, rng)
    canvas = bg.copy()
    taken = np.zeros((IMAGE_SIZE + 2 * _GAP, IMAGE_SIZE + 2 * _GAP), dtype=bool)
    objects: list[RenderedObject] = []
    for _ in range(rng.integers(style.count[0], style.count[1] + 1)):
        k = int(rng.integers(len(style.classes)))
        _, shape_name, palette = style.classes[k]
        crop = shape_mask(shape_name, rng.uniform(*style.size), style.outline, rng)
        h, w = crop.shape
        if h < 2 or w < 2 or h > IMAGE_SIZE or w > IMAGE_SIZE:
            continue
        halo = _dilate(crop, _GAP)
        for _ in range(_PLACEMENT_TRIES):
            x = int(rng.integers(0, IMAGE_SIZE - w + 1))
            y = int(rng.integers(0, IMAGE_SIZE - h + 1))
            box = (x, y, w, h)
            free = not taken[y : y + h + 2 * _GAP, x : x + w + 2 * _GAP][halo].any()
            if free and not any(_boxes_clash(box, o.bbox) for o in objects):
                break
        else:
            continue  # no free spot: leave the object out rather than let it be hidden
        under = bg[y : y + h, x : x + w][crop]
        canvas[y : y + h, x : x + w][crop] = pick_colour(style.min_contrast, palette, under, rng)
        taken[y : y + h + 2 * _GAP, x : x + w + 2 * _GAP] |= halo
        mask = np.zeros((IMAGE_SIZE, IMAGE_SIZE), dtype=bool)
        mask[y : y + h, x : x + w] = crop
        objects.append(RenderedObject(k + 1, box, mask))
    out = canvas.copy()
    if style.night:
        out = out * rng.uniform(0.3, 0.55) * rng.uniform(0.7, 1.0, 3).astype(np.float32)
        out += rng.standard_normal(out.shape, dtype=np.float32) * rng.uniform(8, 18)
        if rng.random() < 0.35:
            out = 255 - out
    elif rng.random() < 0.4:
        # Mild sensor noise on some images only: noise is what makes PNG files large.
        out += rng.standard_normal(out.shape, dtype=np.float32) * rng.uniform(1.5, 5)
    image = np.clip(np.rint(out), 0, 255).astype(np.uint8)
    return Rendered(image, bg, canvas, objects)


def render_job(job: tuple[int, int, int, int, str]) -> list[tuple[int, Box]]:
    """Worker entry point: renders and saves one image, returns its (category_id, box) pairs."""
    seed, task_index, split_index, image_index, path = job
    rendered = render_image(seed, task_index, split_index, image_index)
    Image.fromarray(rendered.image).save(path, format="PNG", compress_level=_PNG_LEVEL)
    return [(o.category_id, o.bbox) for o in rendered.objects]
