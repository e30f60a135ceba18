"""The bundled benchmark: a seeded, procedural object-detection benchmark in COCO format.

It has a *source* set of filled shapes, used to pretrain the base detector, and ten *target
tasks* that range from near transfer (a subset of the source classes) to far transfer
(stroke-drawn letters, night-time images, fine-grained notches). :func:`write_benchmark` renders
it to disk, with one study TOML per task (:func:`study_toml`).

Every image is drawn from its own RNG, seeded by ``[seed, task_index, split_index, image_index]``,
so the output is byte-identical for a given seed and scale whatever the process count or the
subset of tasks written. Letters and digits are polylines defined here, not system fonts, because
font files differ between machines.
"""

from __future__ import annotations

import json
import math
import multiprocessing
import os
import shutil
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

from spotpatch._errors import UserError
from spotpatch.evaluators._progress import progress_bar

__all__ = ["BENCHMARK_TASKS", "SOURCE_CLASSES", "BenchmarkTask", "study_toml", "write_benchmark"]

IMAGE_SIZE = 128
_VERSION = "1.0"
_SOURCE_SPLITS = {"train": 3000, "val": 300}
_TASK_SPLITS = {"train": 512, "val": 128, "test": 128}
_MAX_IOU = 0.15
_GAP = 2  # px kept free around every object, so that no object touches or hides another
_PLACEMENT_TRIES = 40
_MIN_PARALLEL_IMAGES = 2000  # below this, spawning workers (~3 s each) costs more than it saves
_PNG_LEVEL = 1  # zlib level 6 halves the encoding speed for 15% smaller files

Points = Sequence[tuple[float, float]]

# --- Shapes ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Pen:
    """Draws value 255 on a local "L" mask, mapping unit coordinates (y down) to pixels.

    Shapes are defined in roughly ``[-1, 1]^2``; the pen scales them by ``r``, stretches x by
    ``sx``, shears, rotates by ``angle`` and centres them at ``(c, c)``. ``stroke`` is None for
    filled shapes, else the line width of an outline (or of a letter's strokes).
    """

    draw: ImageDraw.ImageDraw
    rng: np.random.Generator
    c: float
    r: float
    angle: float = 0.0
    sx: float = 1.0
    shear: float = 0.0
    stroke: int | None = None

    def pts(self, points: Points) -> list[tuple[float, float]]:
        p = np.asarray(points, dtype=np.float64)
        x, y = p[:, 0] * self.sx + self.shear * p[:, 1], p[:, 1]
        ca, sa = math.cos(self.angle), math.sin(self.angle)
        xs, ys = self.c + self.r * (x * ca - y * sa), self.c + self.r * (x * sa + y * ca)
        return list(zip(xs.tolist(), ys.tolist(), strict=True))

    def polygon(self, points: Points) -> None:
        if self.stroke is None:
            self.draw.polygon(self.pts(points), fill=255)
        else:
            self.draw.polygon(self.pts(points), outline=255, width=self.stroke)

    def ellipse(self, x: float, y: float, radius: float, erase: bool = False) -> None:
        (cx, cy), rr = self.pts([(x, y)])[0], radius * self.r
        box = [cx - rr, cy - rr, cx + rr, cy + rr]
        if erase or self.stroke is None:
            self.draw.ellipse(box, fill=0 if erase else 255)
        else:
            self.draw.ellipse(box, outline=255, width=self.stroke)

    def lines(self, polylines: Sequence[Points]) -> None:
        """Polylines with round joints and caps."""
        w = self.stroke or 2
        for line in polylines:
            pts = self.pts(line)
            self.draw.line(pts, fill=255, width=w, joint="curve")
            for px, py in (pts[0], pts[-1]):
                self.draw.ellipse([px - w / 2, py - w / 2, px + w / 2, py + w / 2], fill=255)


ShapeFn = Callable[[_Pen], None]


def _regular(n: int, start_deg: float = -90.0, inner: float | None = None) -> Points:
    """Vertices of a regular polygon, or of a star when ``inner`` (its inner radius) is set."""
    k = 2 * n if inner else n
    radii = [inner if inner and i % 2 else 1.0 for i in range(k)]
    angles = [math.radians(start_deg) + 2 * math.pi * i / k for i in range(k)]
    return [(r * math.cos(a), r * math.sin(a)) for r, a in zip(radii, angles, strict=True)]


def _arc(cx: float, cy: float, r: float, a0: float, a1: float, n: int = 9) -> Points:
    a = np.radians(np.linspace(a0, a1, n))
    return list(zip((cx + r * np.cos(a)).tolist(), (cy + r * np.sin(a)).tolist(), strict=True))


def _heart() -> Points:
    t = np.linspace(0, 2 * np.pi, 48, endpoint=False)
    x = 16 * np.sin(t) ** 3 / 17
    y = -(13 * np.cos(t) - 5 * np.cos(2 * t) - 2 * np.cos(3 * t) - np.cos(4 * t)) / 17 + 0.15
    return list(zip(x.tolist(), y.tolist(), strict=True))


def _polygon(points: Points) -> ShapeFn:
    return lambda p: p.polygon(points)


def _circle(p: _Pen) -> None:
    p.ellipse(0, 0, 1.0)


def _ring(p: _Pen) -> None:
    p.ellipse(0, 0, 1.0)
    p.ellipse(0, 0, 0.55, erase=p.stroke is None)


def _crescent(p: _Pen) -> None:
    p.ellipse(0, 0, 1.0)
    p.ellipse(0.5, -0.1, 0.85, erase=True)


def _notched(x: float, y: float) -> ShapeFn:
    """A square with a round bite out of the edge at ``(x, y)``: the fine-grained classes."""

    def draw(p: _Pen) -> None:
        p.polygon(_SQUARE)
        p.ellipse(x, y, 0.36, erase=True)

    return draw


def _strokes(polylines: Sequence[Points]) -> ShapeFn:
    return lambda p: p.lines(polylines)


def _seven_segment(segments: str) -> ShapeFn:
    """A digit whose corners are jittered per drawing, with gaps between segments at times."""

    def draw(p: _Pen) -> None:
        rng = p.rng
        corners = {k: (x + rng.normal(0, 0.07), y + rng.normal(0, 0.05)) for k, (x, y) in
                   _SEG_CORNERS.items()}  # fmt: skip
        gap = rng.uniform(0.0, 0.12) if rng.random() < 0.5 else 0.0
        polylines = []
        for s in segments:
            (x0, y0), (x1, y1) = (corners[k] for k in _SEGMENTS[s])
            dx, dy = x1 - x0, y1 - y0
            polylines.append([(x0 + gap * dx, y0 + gap * dy), (x1 - gap * dx, y1 - gap * dy)])
        p.lines(polylines)

    return draw


_SQUARE = [(-1.0, -1.0), (1.0, -1.0), (1.0, 1.0), (-1.0, 1.0)]
_CROSS = [
    (-0.33, -1), (0.33, -1), (0.33, -0.33), (1, -0.33), (1, 0.33), (0.33, 0.33),
    (0.33, 1), (-0.33, 1), (-0.33, 0.33), (-1, 0.33), (-1, -0.33), (-0.33, -0.33),
]  # fmt: skip
_ARROW = [
    (-1, -0.22), (0.15, -0.22), (0.15, -0.62), (1, 0), (0.15, 0.62), (0.15, 0.22), (-1, 0.22),
]  # fmt: skip
_L_SHAPE = [(-0.7, -1), (-0.15, -1), (-0.15, 0.45), (0.7, 0.45), (0.7, 1), (-0.7, 1)]
_T_SHAPE = [
    (-1, -1), (1, -1), (1, -0.5), (0.25, -0.5), (0.25, 1), (-0.25, 1), (-0.25, -0.5), (-1, -0.5),
]  # fmt: skip
_LETTERS: dict[str, list[Points]] = {
    "A": [[(-0.7, 1), (0, -1), (0.7, 1)], [(-0.42, 0.3), (0.42, 0.3)]],
    "E": [[(0.6, -1), (-0.6, -1), (-0.6, 1), (0.6, 1)], [(-0.6, 0), (0.4, 0)]],
    "K": [[(-0.6, -1), (-0.6, 1)], [(0.6, -1), (-0.6, 0.15)], [(-0.2, -0.25), (0.65, 1)]],
    "R": [
        [(-0.6, 1), (-0.6, -1), (0.1, -1), *_arc(0.1, -0.47, 0.53, -90, 90), (-0.6, 0.06)],
        [(0.0, 0.06), (0.6, 1)],
    ],
    "X": [[(-0.6, -1), (0.6, 1)], [(0.6, -1), (-0.6, 1)]],
}
_SEG_CORNERS = {"TL": (-0.5, -1.0), "TR": (0.5, -1.0), "ML": (-0.5, 0.0), "MR": (0.5, 0.0),
                "BL": (-0.5, 1.0), "BR": (0.5, 1.0)}  # fmt: skip
_SEGMENTS = {"a": ("TL", "TR"), "b": ("TR", "MR"), "c": ("MR", "BR"), "d": ("BL", "BR"),
             "e": ("ML", "BL"), "f": ("TL", "ML"), "g": ("ML", "MR")}  # fmt: skip
_DIGITS = {"2": "abged", "3": "abgcd", "4": "fgbc", "5": "afgcd", "7": "abc"}
_EDGES = {"top": (0.0, -1.0), "right": (1.0, 0.0), "bottom": (0.0, 1.0), "left": (-1.0, 0.0)}


@dataclass(frozen=True)
class _Shape:
    draw: ShapeFn
    max_rot: float = 180.0  # degrees either way
    aspect: tuple[float, float] = (1.0, 1.0)  # range of the x stretch
    shear: tuple[float, float] = (0.0, 0.0)
    lines: bool = False  # drawn with strokes whose width grows with the size


_LETTER = {"max_rot": 10, "aspect": (0.75, 1.1), "shear": (-0.3, 0.3), "lines": True}
_DIGIT = {"max_rot": 6, "aspect": (0.8, 1.15), "shear": (-0.25, 0.05), "lines": True}
_SHAPES: dict[str, _Shape] = {
    "circle": _Shape(_circle),
    # Squares and diamonds turn only a little: a square turned 45 degrees is a diamond.
    "square": _Shape(_polygon([(0.85 * x, 0.85 * y) for x, y in _SQUARE]), max_rot=15),
    "triangle": _Shape(_polygon(_regular(3))),
    "star": _Shape(_polygon(_regular(5, inner=0.45))),
    "cross": _Shape(_polygon(_CROSS)),
    "ring": _Shape(_ring),
    "diamond": _Shape(_polygon([(0, -1), (0.58, 0), (0, 1), (-0.58, 0)]), max_rot=15),
    "hexagon": _Shape(_polygon(_regular(6, start_deg=0))),
    "arrow": _Shape(_polygon(_ARROW)),
    "heart": _Shape(_polygon(_heart()), max_rot=20),
    "crescent": _Shape(_crescent),
    "l-shape": _Shape(_polygon(_L_SHAPE)),
    "t-shape": _Shape(_polygon(_T_SHAPE)),
    # The notch's side is the label, so these barely turn.
    **{f"notch-{k}": _Shape(_notched(*xy), max_rot=8) for k, xy in _EDGES.items()},
    **{f"letter-{k.lower()}": _Shape(_strokes(v), **_LETTER) for k, v in _LETTERS.items()},
    **{f"digit-{k}": _Shape(_seven_segment(v), **_DIGIT) for k, v in _DIGITS.items()},
}

SOURCE_CLASSES: tuple[str, ...] = (
    "circle", "square", "triangle", "star", "cross", "ring", "diamond", "hexagon",
)  # fmt: skip

# --- Backgrounds: float32 (H, W, 3) arrays in [0, 255] -----------------------------------------

_YY, _XX = np.mgrid[0:IMAGE_SIZE, 0:IMAGE_SIZE].astype(np.float32)


def _colour(rng: np.random.Generator) -> np.ndarray:
    return rng.uniform(0, 255, 3).astype(np.float32)


def _near(rng: np.random.Generator, c: np.ndarray, spread: float) -> np.ndarray:
    return np.clip(c + rng.normal(0, spread, 3), 0, 255).astype(np.float32)


def _rotated(rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    a = rng.uniform(0, math.pi)
    ca, sa = math.cos(a), math.sin(a)
    return _XX * ca + _YY * sa, -_XX * sa + _YY * ca


def _bg_flat(rng: np.random.Generator) -> np.ndarray:
    return np.broadcast_to(_colour(rng), (IMAGE_SIZE, IMAGE_SIZE, 3)).copy()


def _bg_gradient(rng: np.random.Generator) -> np.ndarray:
    c0, c1 = _colour(rng), _colour(rng)
    u, _ = _rotated(rng)
    t = ((u - u.min()) / (u.max() - u.min() + 1e-6))[..., None]
    return c0 + t * (c1 - c0)


def _bg_blobs(rng: np.random.Generator) -> np.ndarray:
    """Low-contrast ellipses on a flat colour."""
    base = _colour(rng)
    img = np.broadcast_to(base, (IMAGE_SIZE, IMAGE_SIZE, 3)).copy()
    for _ in range(rng.integers(3, 9)):
        cx, cy = rng.uniform(0, IMAGE_SIZE, 2)
        ax, ay = rng.uniform(8, 40, 2)
        a = rng.uniform(0, math.pi)
        dx, dy = _XX - cx, _YY - cy
        u = (dx * math.cos(a) + dy * math.sin(a)) / ax
        v = (-dx * math.sin(a) + dy * math.cos(a)) / ay
        img[u * u + v * v < 1] = _near(rng, base, 22)
    return img


def _bg_stripes(rng: np.random.Generator) -> np.ndarray:
    c0 = _colour(rng)
    c1 = _near(rng, c0, 60)
    u, _ = _rotated(rng)
    on = ((u / rng.uniform(5, 18) + rng.uniform()) % 1.0) < rng.uniform(0.3, 0.7)
    return np.where(on[..., None], c1, c0)


def _bg_checker(rng: np.random.Generator) -> np.ndarray:
    c0 = _colour(rng)
    c1 = _near(rng, c0, 60)
    u, v = _rotated(rng)
    cell = rng.uniform(5, 16)
    on = (np.floor(u / cell) + np.floor(v / cell)) % 2 == 1
    return np.where(on[..., None], c1, c0)


def _distractors(img: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Random lines and ellipse blobs, drawn before the objects so that they never hide them."""
    pil = Image.fromarray(np.clip(img, 0, 255).astype(np.uint8))
    d = ImageDraw.Draw(pil)
    for _ in range(rng.integers(2, 7)):
        x0, y0, x1, y1 = rng.uniform(-10, IMAGE_SIZE + 10, 4).tolist()
        colour = tuple(rng.integers(0, 256, 3).tolist())
        d.line([x0, y0, x1, y1], fill=colour, width=int(rng.integers(1, 4)))
    for _ in range(rng.integers(1, 5)):
        cx, cy = rng.uniform(0, IMAGE_SIZE, 2).tolist()
        ax, ay = rng.uniform(3, 14, 2).tolist()
        d.ellipse(
            [cx - ax, cy - ay, cx + ax, cy + ay], fill=tuple(rng.integers(0, 256, 3).tolist())
        )
    return np.asarray(pil, dtype=np.float32)


_BACKGROUNDS: dict[str, Callable[[np.random.Generator], np.ndarray]] = {
    "flat": _bg_flat,
    "gradient": _bg_gradient,
    "blobs": _bg_blobs,
    "stripes": _bg_stripes,
    "checker": _bg_checker,
}
_PALETTES: dict[str, tuple[tuple[float, float], ...]] = {
    "red": ((170, 255), (0, 60), (0, 60)),
    "blue": ((0, 50), (40, 110), (170, 255)),
}

# --- Tasks -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class BenchmarkTask:
    """One target task of the bundled benchmark.

    Attributes:
        name: Kebab-case task name, also its folder name under ``tasks/``.
        transfer: How far the task lies from the source set: ``"near"``, ``"middle"`` or
            ``"far"``.
        classes: Class names in category-id order (ids ``1..K``).
        description: One line saying what the task is.
    """

    name: str
    transfer: str
    classes: tuple[str, ...]
    description: str


@dataclass(frozen=True)
class _Style:
    """How the images of one set are drawn.

    ``classes`` holds (class name, shape name, palette or None for random colours) per class.
    """

    classes: tuple[tuple[str, str, str | None], ...]
    size: tuple[int, int] = (16, 56)  # nominal object diameter in px
    count: tuple[int, int] = (1, 4)  # objects per image, before any is left out for lack of room
    backgrounds: tuple[str, ...] = ("flat", "gradient", "blobs")
    outline: bool = False
    distractors: bool = False
    desaturate: bool = False
    night: bool = False
    min_contrast: float = 90.0  # mean RGB distance between an object and the pixels under it


def _plain(*names: str) -> tuple[tuple[str, str, None], ...]:
    return tuple((n, n, None) for n in names)


_TASK_TABLE: tuple[tuple[str, str, str, _Style], ...] = (
    ("shapes-subset", "near", "four of the source shapes, drawn in the source style",
     _Style(_plain("circle", "square", "triangle", "star"))),
    ("colored-shapes", "near", "red and blue circles and squares: the class is shape and colour",
     _Style(tuple((f"{c}-{s}", s, c) for c in ("red", "blue") for s in ("circle", "square")),
            desaturate=True)),
    ("new-shapes", "middle", "shapes absent from the source set: arrow, heart, crescent, L, T",
     _Style(_plain("arrow", "heart", "crescent", "l-shape", "t-shape"), size=(20, 56))),
    ("tiny-crowd", "middle", "three source shapes, tiny (8-16 px) and crowded (5-12 per image)",
     _Style(_plain("circle", "square", "triangle"), size=(8, 16), count=(5, 12))),
    ("textured", "middle", "source shapes on stripes, checkerboards, distractor lines and blobs",
     _Style(_plain("square", "triangle", "star", "cross"), size=(20, 56),
            backgrounds=("stripes", "checker", "blobs"), distractors=True)),
    ("outlines", "middle", "hollow source shapes drawn with thin 1-3 px strokes",
     _Style(_plain("circle", "square", "triangle", "star", "hexagon"), size=(20, 56),
            outline=True, min_contrast=120.0)),
    ("glyphs", "far", "stroke-drawn capital letters with random stroke width, shear and scale",
     _Style(_plain(*(f"letter-{k.lower()}" for k in _LETTERS)), size=(20, 56))),
    ("digits", "far", "jittered seven-segment digits 2, 3, 4, 5 and 7",
     _Style(_plain(*(f"digit-{k}" for k in _DIGITS)), size=(24, 56))),
    # Objects start with a high contrast, as darkening and noise take most of it away.
    ("night", "far", "source shapes in dark, noisy, low-contrast and sometimes inverted images",
     _Style(_plain("circle", "square", "triangle", "star"), size=(20, 56), night=True,
            min_contrast=150.0)),
    ("fine-grained", "far", "squares that differ only in which edge has a small notch",
     _Style(_plain(*(f"notch-{k}" for k in _EDGES)), size=(24, 56), count=(1, 3))),
)  # fmt: skip

BENCHMARK_TASKS: tuple[BenchmarkTask, ...] = tuple(
    BenchmarkTask(name, transfer, tuple(c[0] for c in style.classes), desc)
    for name, transfer, desc, style in _TASK_TABLE
)
# Index 0 is the source set and BENCHMARK_TASKS[i] is index i + 1: the index seeds the RNG.
_STYLES: tuple[_Style, ...] = (_Style(_plain(*SOURCE_CLASSES)), *(t[3] for t in _TASK_TABLE))

# --- Rendering -------------------------------------------------------------------------------

Box = tuple[int, int, int, int]  # x, y, w, h in pixels


@dataclass(frozen=True)
class _Object:
    category_id: int
    bbox: Box
    mask: np.ndarray  # (H, W) bool: the pixels drawn for this object


@dataclass(frozen=True)
class _Rendered:
    image: np.ndarray  # (H, W, 3) uint8, as saved
    background: np.ndarray  # (H, W, 3) float32, before any object was drawn
    composite: np.ndarray  # (H, W, 3) float32, objects drawn, before the photometric effects
    objects: list[_Object]


def _shape_mask(shape: _Shape, size: float, outline: bool, rng: np.random.Generator) -> np.ndarray:
    """Draws one shape on a local canvas and returns its mask cropped to the drawn pixels."""
    r = size / 2
    side = int(math.ceil(size * 1.7)) + 6  # room for any rotation, stretch and shear
    if shape.lines:
        stroke: int | None = max(2, round(r * rng.uniform(0.16, 0.3)))
    else:
        stroke = int(rng.integers(1, 4)) if outline else None
    canvas = Image.new("L", (side, side), 0)
    pen = _Pen(
        ImageDraw.Draw(canvas), rng, side / 2, r,
        angle=math.radians(rng.uniform(-shape.max_rot, shape.max_rot)),
        sx=rng.uniform(*shape.aspect), shear=rng.uniform(*shape.shear), stroke=stroke,
    )  # fmt: skip
    shape.draw(pen)
    mask = np.asarray(canvas) > 0
    rows, cols = np.flatnonzero(mask.any(1)), np.flatnonzero(mask.any(0))
    return mask[rows[0] : rows[-1] + 1, cols[0] : cols[-1] + 1]


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


def _pick_colour(
    style: _Style, palette: str | None, under: np.ndarray, rng: np.random.Generator
) -> np.ndarray:
    """An object colour that stands out from the background pixels ``under`` it."""
    if palette is not None:
        return np.array([rng.uniform(lo, hi) for lo, hi in _PALETTES[palette]], np.float32)
    candidates = rng.uniform(0, 255, (16, 3)).astype(np.float32)
    under = under[:: max(1, len(under) // 256)]  # a regular subsample is as good, and faster
    dist = np.linalg.norm(candidates[:, None, :] - under[None, :, :], axis=2).mean(1)
    ok = np.flatnonzero(dist >= style.min_contrast)
    return candidates[ok[0] if ok.size else int(np.argmax(dist))]


def _render_image(seed: int, task_index: int, split_index: int, image_index: int) -> _Rendered:
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
    style = _STYLES[task_index]
    bg = _BACKGROUNDS[style.backgrounds[rng.integers(len(style.backgrounds))]](rng)
    if style.desaturate:
        # Grey-ish backgrounds, so that only the objects carry the red/blue signal.
        lum = bg.mean(axis=2, keepdims=True)
        bg = lum + 0.15 * (bg - lum)
    if style.distractors:
        bg = _distractors(bg, rng)
    canvas = bg.copy()
    taken = np.zeros((IMAGE_SIZE + 2 * _GAP, IMAGE_SIZE + 2 * _GAP), dtype=bool)
    objects: list[_Object] = []
    for _ in range(rng.integers(style.count[0], style.count[1] + 1)):
        k = int(rng.integers(len(style.classes)))
        _, shape_name, palette = style.classes[k]
        crop = _shape_mask(_SHAPES[shape_name], rng.uniform(*style.size), style.outline, rng)
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
        canvas[y : y + h, x : x + w][crop] = _pick_colour(style, palette, under, rng)
        taken[y : y + h + 2 * _GAP, x : x + w + 2 * _GAP] |= halo
        mask = np.zeros((IMAGE_SIZE, IMAGE_SIZE), dtype=bool)
        mask[y : y + h, x : x + w] = crop
        objects.append(_Object(k + 1, box, mask))
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
    return _Rendered(image, bg, canvas, objects)


def _render_job(job: tuple[int, int, int, int, str]) -> list[tuple[int, Box]]:
    """Worker entry point: renders and saves one image, returns its (category_id, box) pairs."""
    seed, task_index, split_index, image_index, path = job
    rendered = _render_image(seed, task_index, split_index, image_index)
    Image.fromarray(rendered.image).save(path, format="PNG", compress_level=_PNG_LEVEL)
    return [(o.category_id, o.bbox) for o in rendered.objects]


# --- Writing ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Split:
    folder: Path  # the split's image folder; its JSON is folder.with_suffix(".json")
    task_index: int
    split_index: int
    count: int
    classes: tuple[str, ...]
    description: str


def _coco(split: _Split, seed: int, results: Sequence[list[tuple[int, Box]]]) -> dict:
    kind = split.classes[0].split("-")[0]
    supercategory = kind if kind in ("letter", "digit") else "shape"
    images, annotations = [], []
    for i, anns in enumerate(results):
        images.append({"id": i + 1, "file_name": f"{i:06d}.png",
                       "width": IMAGE_SIZE, "height": IMAGE_SIZE})  # fmt: skip
        for cat, (x, y, w, h) in anns:
            annotations.append({
                "id": len(annotations) + 1, "image_id": i + 1, "category_id": cat,
                "bbox": [float(x), float(y), float(w), float(h)], "area": float(w * h),
                "iscrowd": 0,
            })  # fmt: skip
    return {
        "info": {"description": split.description, "version": _VERSION, "seed": seed},
        "images": images,
        "annotations": annotations,
        "categories": [
            {"id": i + 1, "name": n, "supercategory": supercategory}
            for i, n in enumerate(split.classes)
        ],  # fmt: skip
    }


def study_toml(task: BenchmarkTask, *, seed: int = 0) -> str:
    """Returns the text of ``OUT/studies/NAME.toml`` for a task.

    Args:
        task: The benchmark task.
        seed: Seed written into the study.

    Returns:
        TOML text whose data paths are relative to the ``studies/`` folder.
    """
    n = task.name
    return f"""\
# Bundled benchmark task "{n}" ({task.transfer} transfer): {task.description}
name = "{n}"
seed = {seed}

[data]
train = "../tasks/{n}/train.json"
train_images = "../tasks/{n}/train"
val = "../tasks/{n}/val.json"
val_images = "../tasks/{n}/val"
test = "../tasks/{n}/test.json"
test_images = "../tasks/{n}/test"

[base]
model = "spotpatch-tiny"

[space]
granularity = "block"
kinds = ["bn", "dw", "lora4", "full"]
dtype = "float32"

[train]
steps = 300
batch_size = 16
lr = 0.003

[search]
trials = 24
sampler = "nsga2"
warm_start = "relaxation"
backend = "local"
workers = 1
storage = "sqlite:///spotpatch.db"
"""


def _plan(root: Path, scale: float, names: Sequence[str]) -> list[_Split]:
    sets = [(root / "source", 0, SOURCE_CLASSES, _SOURCE_SPLITS, "source set")]
    sets += [
        (
            root / "tasks" / t.name,
            i + 1,
            t.classes,
            _TASK_SPLITS,
            f"task {t.name}: {t.description}",
        )
        for i, t in enumerate(BENCHMARK_TASKS)
        if t.name in names
    ]
    return [
        _Split(folder / split, index, s, max(4, round(n * scale)), classes,
               f"spotpatch benchmark, {what}")
        for folder, index, classes, splits, what in sets
        for s, (split, n) in enumerate(splits.items())
    ]  # fmt: skip


def _generate(
    root: Path, seed: int, scale: float, names: Sequence[str], progress: bool | None,
    processes: int | None,
) -> None:  # fmt: skip
    splits = _plan(root, scale, names)
    jobs = []
    for sp in splits:
        sp.folder.mkdir(parents=True)
        jobs += [(seed, sp.task_index, sp.split_index, i, str(sp.folder / f"{i:06d}.png"))
                 for i in range(sp.count)]  # fmt: skip
    if processes is None:
        processes = 1 if len(jobs) < _MIN_PARALLEL_IMAGES else min(os.cpu_count() or 2, 4)
    results = []
    with progress_bar(desc="benchmark", total=len(jobs), unit="img", progress=progress) as bar:
        if processes <= 1:
            for job in jobs:
                results.append(_render_job(job))
                bar.update()
        else:
            # Spawn, not fork: the caller may run threads (torch, ray) that a fork would break.
            with multiprocessing.get_context("spawn").Pool(processes) as pool:
                for res in pool.imap(_render_job, jobs, chunksize=32):
                    results.append(res)
                    bar.update()
    start = 0
    for sp in splits:
        coco = _coco(sp, seed, results[start : start + sp.count])
        start += sp.count
        sp.folder.with_suffix(".json").write_text(json.dumps(coco, separators=(",", ":")))
    (root / "studies").mkdir()
    for task in BENCHMARK_TASKS:
        if task.name in names:
            (root / "studies" / f"{task.name}.toml").write_text(study_toml(task, seed=seed))


def write_benchmark(
    out: str | Path,
    *,
    seed: int = 0,
    scale: float = 1.0,
    tasks: Sequence[str] | None = None,
    progress: bool | None = None,
    overwrite: bool = False,
    processes: int | None = None,
) -> Path:
    """Write the benchmark under `out`; returns the resolved path.

    The benchmark is rendered into a sibling ``OUT.partial-<pid>`` folder and renamed into place
    once complete, so ``out`` never holds a half-written benchmark.

    Args:
        out: Destination folder; must be absent or empty unless ``overwrite`` is set.
        seed: Benchmark seed; the same seed and scale give byte-identical files.
        scale: Multiplies every split's image count (rounded, at least 4 images).
        tasks: Names of the tasks to write (all when None); the source set is always written.
        progress: Show a progress bar; None shows it only on a terminal.
        overwrite: Replace a non-empty ``out``, once the new benchmark is complete.
        processes: Worker processes; None uses up to 4 (one for small benchmarks). Workers are
            spawned, so a script that calls this at import time needs the usual
            ``if __name__ == "__main__":`` guard.

    Returns:
        The resolved destination folder.

    Raises:
        UserError: On an unknown task name, a bad seed or scale, or a non-empty ``out`` without
            ``overwrite``.
    """
    known = [t.name for t in BENCHMARK_TASKS]
    names = known if tasks is None else list(tasks)
    unknown = [n for n in names if n not in known]
    if unknown:
        raise UserError(f"unknown benchmark task {unknown[0]!r}; known: {', '.join(known)}")
    if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
        raise UserError(f"benchmark seed must be a non-negative integer, got {seed!r}")
    if not (scale > 0 and math.isfinite(scale)):
        raise UserError(f"benchmark scale must be a positive number, got {scale!r}")
    out = Path(out).expanduser().resolve()
    if out.exists() and not overwrite and not (out.is_dir() and not any(out.iterdir())):
        hint = "pass overwrite=True (--force) to replace it"
        raise UserError(f"{out} exists and is not empty; {hint}")
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f"{out.name}.partial-{os.getpid()}")
    old = out.with_name(f"{out.name}.old-{os.getpid()}")
    for leftover in (tmp, old):  # from an earlier run of a process with this pid, killed
        shutil.rmtree(leftover, ignore_errors=True)
    try:
        tmp.mkdir()
        _generate(tmp, seed, scale, names, progress, processes)
        if out.exists():
            os.replace(out, old)
            try:
                os.replace(tmp, out)
            except BaseException:
                os.replace(old, out)
                raise
            if old.is_dir():
                shutil.rmtree(old)
            else:
                old.unlink()
        else:
            os.replace(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return out
