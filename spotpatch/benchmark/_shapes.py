"""Shapes of the bundled benchmark: the pen, filled shapes, notched squares, letters and digits.

Shapes are defined in unit coordinates and drawn as masks by :func:`shape_mask`. Letters and
digits are polylines defined here, not system fonts, because font files differ between machines.
Every random choice comes from the image's RNG, in a fixed order, so a drawing is reproducible.
Imports nothing from the rest of spotpatch.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageDraw

__all__ = ["DIGITS", "EDGES", "LETTERS", "shape_mask"]

Points = Sequence[tuple[float, float]]


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
LETTERS: dict[str, list[Points]] = {
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
DIGITS = {"2": "abged", "3": "abgcd", "4": "fgbc", "5": "afgcd", "7": "abc"}
EDGES = {"top": (0.0, -1.0), "right": (1.0, 0.0), "bottom": (0.0, 1.0), "left": (-1.0, 0.0)}


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
    **{f"notch-{k}": _Shape(_notched(*xy), max_rot=8) for k, xy in EDGES.items()},
    **{f"letter-{k.lower()}": _Shape(_strokes(v), **_LETTER) for k, v in LETTERS.items()},
    **{f"digit-{k}": _Shape(_seven_segment(v), **_DIGIT) for k, v in DIGITS.items()},
}


def shape_mask(name: str, size: float, outline: bool, rng: np.random.Generator) -> np.ndarray:
    """Draws the shape ``name`` on a local canvas; returns its mask cropped to the drawn pixels.

    Args:
        name: A key of the shape table: ``"circle"``, ``"notch-left"``, ``"letter-a"``...
        size: Nominal diameter in pixels.
        outline: Draw filled shapes as outlines (stroke-drawn shapes ignore it).
        rng: The image's RNG; the pose, stretch, shear and stroke width are drawn from it.
    """
    shape = _SHAPES[name]
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
