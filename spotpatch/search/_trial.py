"""A trial in flight: the job a worker runs and the outcome it sends back.

Both are plain records that cross process boundaries (local worker processes, Ray workers):
a :class:`TrialJob` holds only what scoring needs, never the study; a :class:`TrialOutcome`
holds the evaluator's result, or why there is none.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

__all__ = ["TrialJob", "TrialOutcome"]


@dataclass(frozen=True)
class TrialJob:
    """What a worker needs to score one trial.

    Attributes:
        number: the trial's number in its study.
        sites: the config to score (site -> kind; sites not listed are shared).
        seed: the trial's training seed.
        fractions: early-stopping checkpoints, as fractions of the steps (empty: off).
        margin: how far below a reference a trial may be at a checkpoint.
        references: (step, mAP) pairs of each finished trial with no more bytes.
    """

    number: int
    sites: dict[str, str]
    seed: int
    fractions: tuple[float, ...] = ()
    margin: float = 0.0
    references: tuple[tuple[tuple[int, float], ...], ...] = ()

    def reference_maps(self) -> list[dict[int, float]]:
        return [dict(ref) for ref in self.references]


@dataclass(frozen=True)
class TrialOutcome:
    """How a trial ended: scored (``result``, an ``EvalResult``), failed (``error``) or stopped
    early (neither; ``intermediate`` holds the mAPs that stopped it)."""

    result: Any = field(default=None, repr=False)
    error: str | None = None
    intermediate: tuple[tuple[int, float], ...] = ()

    @property
    def map(self) -> float | None:
        return None if self.result is None else self.result.map
