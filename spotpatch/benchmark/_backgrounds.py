"""Backgrounds, distractors and object colours of the bundled benchmark.

A background is a float32 ``(IMAGE_SIZE, IMAGE_SIZE, 3)`` array in ``[0, 255]``, drawn from the
image's RNG: flat, a gradient, low-contrast blobs, stripes or a checkerboard. Imports nothing
from the rest of spotpatch.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np
from PIL import Image, ImageDraw

__all__ = ["BACKGROUNDS", "IMAGE_SIZE", "distractors", "pick_colour"]

IMAGE_SIZE = 128  # pixels, square

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


def distractors(img: np.ndarray, rng: np.random.Generator) -> np.ndarray:
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


BACKGROUNDS: dict[str, Callable[[np.random.Generator], np.ndarray]] = {
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


def pick_colour(
    min_contrast: float, palette: str | None, under: np.ndarray, rng: np.random.Generator
) -> np.ndarray:
    """An object colour that stands out from the background pixels ``under`` it.

    Args:
        min_contrast: Least mean RGB distance to the pixels ``under`` the object; when none of
            16 random candidates reaches it, the most distant one.
        palette: A named colour range (``"red"``, ``"blue"``) that sets the colour instead.
        under: (N, 3) float32 background pixels the object covers.
        rng: The image's RNG.
    """
    if palette is not None:
        return np.array([rng.uniform(lo, hi) for lo, hi in _PALETTES[palette]], np.float32)
    candidates = rng.uniform(0, 255, (16, 3)).astype(np.float32)
    under = under[:: max(1, len(under) // 256)]  # a regular subsample is as good, and faster
    dist = np.linalg.norm(candidates[:, None, :] - under[None, :, :], axis=2).mean(1)
    ok = np.flatnonzero(dist >= min_contrast)
    return candidates[ok[0] if ok.size else int(np.argmax(dist))]
