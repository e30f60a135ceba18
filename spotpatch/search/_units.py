"""mAP in two units, the comparisons made in them, and the mean of a config's runs.

Stored and computed mAP is in [0, 1], as pycocotools gives it; distances a user writes (the
tolerance, ``within=D``) and every Δ printed are in mAP points (1 point = 0.01). Converting
happens here and nowhere else.

Example:
    >>> to_points(0.0125), from_points(0.5)
    (1.25, 0.005)
    >>> reaches(0.70 - 0.005, floor(0.70, 0.5))
    True
"""

from __future__ import annotations

import statistics
from collections.abc import Sequence

__all__ = [
    "DEFAULT_CONFIRM_MARGIN",
    "DEFAULT_TOLERANCE",
    "EPS",
    "floor",
    "from_points",
    "mean_sd",
    "reaches",
    "to_points",
    "within",
]

#: mAP points a smaller patch may lose against the full fine-tune (``search.tolerance``).
DEFAULT_TOLERANCE = 1.0
#: How surely a confirmed answer holds on its deciding seeds, in standard deviations of the Δ
#: its reporting seeds are expected to show (``search.confirm_margin``): the gaps between
#: deciding and reporting seeds' Δs came out 1.25 (median) to 2 (root mean square) times as
#: wide as the pooled spread predicts, on the bundled tasks rendered with seeds 2 and 3.
DEFAULT_CONFIRM_MARGIN = 1.5
#: Comparisons of mAP in [0, 1] forgive float rounding of this size.
EPS = 1e-12


def to_points(value: float) -> float:
    """mAP in [0, 1] (or a difference of two) in points."""
    return 100.0 * value


def from_points(points: float) -> float:
    """mAP points as a value (or difference) in [0, 1]."""
    return points / 100.0


def floor(mark: float, points: float) -> float:
    """The lowest mAP in [0, 1] within ``points`` of ``mark``."""
    return mark - from_points(points)


def reaches(value: float, low: float) -> bool:
    """Whether ``value`` is at least ``low`` (both in [0, 1]), up to rounding."""
    return value >= low - EPS


def within(value: float, mark: float, points: float) -> bool:
    """Whether ``value`` is within ``points`` mAP points below ``mark`` or above it (both in
    [0, 1]), up to rounding: a config within the tolerance of the full fine-tune."""
    return reaches(value, floor(mark, points))


def mean_sd(values: Sequence[float]) -> tuple[float, float]:
    """The mean and sample standard deviation (0 for one value) of runs' mAPs.

    Example:
        >>> mean_sd([0.5, 0.7])
        (0.6, 0.14142135623730948)
    """
    sd = statistics.stdev(values) if len(values) > 1 else 0.0
    return statistics.fmean(values), sd
