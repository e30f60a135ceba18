"""Pareto analysis of (mAP, patch bytes): the front, its hypervolume and its knee.

Hypervolume is measured with bytes as a fraction of the full patch (a full fine-tune stored
whole) and the reference point (mAP 0, bytes = the full patch). It then reads as the mean, over
every byte budget from 0 to the full patch, of the best mAP the front reaches within that
budget: 0 for nothing, the best mAP for a free patch that reaches it.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

__all__ = ["FrontPoint", "pareto_front", "hypervolume", "knee_point"]


@dataclass(frozen=True)
class FrontPoint:
    """A finished trial as the front sees it: ``map`` is the mean over ``runs`` runs of its
    config (each with its own seed; ``number`` is the first of them).

    Example:
        >>> pareto_front([FrontPoint(0, 0.3, 100), FrontPoint(1, 0.2, 200)])
        [FrontPoint(number=0, map=0.3, bytes=100)]
    """

    number: int
    map: float
    bytes: int
    runs: int = field(default=1, repr=False)


def pareto_front(points: Iterable[FrontPoint]) -> list[FrontPoint]:
    """The non-dominated points, smallest patch first (mAP strictly rises along it).

    Of points with equal mAP and bytes the earliest trial is kept.
    """
    front: list[FrontPoint] = []
    for p in sorted(points, key=lambda p: (p.bytes, -p.map, p.number)):
        if not front or p.map > front[-1].map:
            front.append(p)
    return front


def hypervolume(points: Iterable[FrontPoint], full_bytes: int) -> float:
    """Area dominated by the front in (bytes / full_bytes, mAP), reference (1, 0); in [0, 1]."""
    if full_bytes <= 0:
        raise ValueError("full_bytes must be positive")
    area, previous = 0.0, 0.0
    front = [p for p in pareto_front(points) if p.bytes < full_bytes and p.map > 0]
    # Smallest patch first: each point adds the strip from the previous mAP level to its own,
    # dominated from its size up to the full patch.
    for p in front:
        width = 1.0 - p.bytes / full_bytes
        area += width * (p.map - previous)
        previous = p.map
    return area


def knee_point(front: list[FrontPoint], full_bytes: int) -> FrontPoint:
    """The front point farthest above the chord between its two ends, in normalized units
    (bytes / full_bytes against mAP / the front's mAP range): where more bytes stop paying."""
    if not front:
        raise ValueError("empty front")
    if len(front) <= 2:
        return front[-1] if len(front) == 2 and front[-1].map - front[0].map > 0 else front[0]
    low, high = front[0], front[-1]
    span_x = max((high.bytes - low.bytes) / full_bytes, 1e-12)
    span_y = max(high.map - low.map, 1e-12)

    def lift(p: FrontPoint) -> float:
        x = (p.bytes - low.bytes) / full_bytes / span_x
        y = (p.map - low.map) / span_y
        return y - x

    return max(front, key=lambda p: (lift(p), -p.bytes))
