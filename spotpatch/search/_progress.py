"""Where a study stands, read from its trial records: counts, front, best mAP, hypervolume."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from spotpatch.search._pareto import FrontPoint, hypervolume, pareto_front
from spotpatch.search._record import TrialRecord
from spotpatch.search._units import mean_sd

__all__ = ["StudyProgress", "front_points", "summarize"]


@dataclass(frozen=True)
class StudyProgress:
    """Where a study stands, for progress lines and ``status``: its search trials, and past
    its total its confirmation runs (``confirmed`` done, ``confirming`` running)."""

    done: int
    total: int
    failed: int
    pruned: int
    running: int
    front_size: int
    best_map: float | None
    smallest_front_bytes: int | None
    hypervolume: float | None
    confirmed: int = 0
    confirming: int = 0


def front_points(records: Sequence[TrialRecord]) -> list[FrontPoint]:
    """Completed configs as points: a config run more than once (a repeat with another seed)
    is one point at the mean of its runs, numbered by its first trial.

    A duplicate (a proposal told an earlier trial's result) stands for its config only where
    ``records`` hold no run of it (a subset of a study's records, such as its searched trials
    without the presets).
    """
    runs: dict[frozenset, list[TrialRecord]] = {}
    for r in records:
        if r.complete:
            runs.setdefault(r.key, []).append(r)
    for r in records:
        if r.duplicate_of is not None and r.map is not None and r.sites is not None:
            runs.setdefault(r.key, [r])
    return sorted(
        (
            FrontPoint(rs[0].number, mean_sd([r.map for r in rs])[0], rs[0].patch_bytes, len(rs))
            for rs in runs.values()
        ),
        key=lambda p: p.number,
    )


def summarize(records: Sequence[TrialRecord], total: int, full_bytes: int) -> StudyProgress:
    """Where a study stands, from its trial records (``total``: the trials it is to have)."""
    import optuna

    S = optuna.trial.TrialState
    counted = [r for r in records if r.counts_toward_total()]
    points = front_points(records)
    front = pareto_front(points)
    return StudyProgress(
        done=sum(r.state != S.RUNNING for r in counted),
        total=total,
        failed=sum(r.state == S.FAIL for r in counted),
        pruned=sum(r.state == S.PRUNED for r in counted),
        running=sum(r.state == S.RUNNING for r in counted),
        front_size=len(front),
        best_map=max((p.map for p in points), default=None),
        smallest_front_bytes=front[0].bytes if front else None,
        hypervolume=hypervolume(points, full_bytes) if points else None,
        confirmed=sum(r.confirmed for r in records),
        confirming=sum(r.state == S.RUNNING and r.confirm_stage is not None for r in records),
    )
