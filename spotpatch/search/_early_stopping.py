"""Multi-objective early stopping (Optuna's pruners handle one objective only).

At each checkpoint (a fraction of the step budget) a trial's val mAP is compared with that of
every finished trial, at the same step, whose patch is no larger: if it is below one of them by
more than ``margin``, the trial is dominated there and stops. A stopped trial is therefore
dominated by a trial the study already has, at the point where it stopped.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

from spotpatch.search._record import TrialRecord

__all__ = ["EarlyStopping", "early_stop_references", "early_stop_callback"]


@dataclass(frozen=True)
class EarlyStopping:
    """When to compare (``checkpoints``: fractions of the steps) and by how much a trial may be
    below a no-larger finished one before it stops (``margin``: mAP in [0, 1])."""

    checkpoints: tuple[float, ...] = (0.33, 0.67)
    margin: float = 0.02


def early_stop_references(
    records: Sequence[TrialRecord], patch_bytes: int
) -> list[dict[int, float]]:
    """The intermediate mAPs (step -> mAP) of the completed trials no larger than
    ``patch_bytes``."""
    return [
        dict(r.intermediate)
        for r in records
        if r.complete and r.patch_bytes is not None and r.patch_bytes <= patch_bytes
    ]


def early_stop_callback(
    references: Sequence[Mapping[int, float]], margin: float, seen: list[tuple[int, float]]
) -> Callable[[int, float, float], None]:
    """The evaluator callback of one trial: records each intermediate mAP in ``seen`` and
    stops the trial (``optuna.TrialPruned``) when it is below a reference's mAP at the same
    step by more than ``margin``."""
    import optuna

    def callback(step: int, fraction: float, value: float) -> None:
        seen.append((step, value))
        for ref in references:
            other = ref.get(step)
            if other is not None and value < other - margin:
                raise optuna.TrialPruned(
                    f"mAP {value:.3f} at step {step} is below {other:.3f} of a trial with no "
                    f"more bytes"
                )

    return callback
