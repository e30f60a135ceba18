"""Where a study stands, read from its trial records: counts, front, best mAP, hypervolume;
and where many studies stand together (a run of a fleet)."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from spotpatch.search._pareto import FrontPoint, hypervolume, pareto_front
from spotpatch.search._record import TrialRecord
from spotpatch.search._units import mean_sd

__all__ = ["FleetProgress", "StudyProgress", "fleet_progress", "front_points", "summarize"]


@dataclass(frozen=True)
class StudyProgress:
    """Where a study stands, for progress lines and ``status``: its search trials, and past
    its total its confirmation runs (``confirmed`` done, ``confirming`` running,
    ``confirm_left`` still to train at the least, running ones included)."""

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
    confirm_left: int = 0

    @property
    def finished(self) -> bool:
        """Every trial done, nothing running and no confirmation run left to train."""
        return (
            self.done >= self.total
            and not self.running
            and not self.confirming
            and not self.confirm_left
        )


@dataclass(frozen=True)
class FleetProgress:
    """Where many studies stand together: the sums of their :class:`StudyProgress`.

    Attributes:
        studies: how many studies.
        finished: studies with every trial done, nothing running and no confirmation run
            left.
        busy: studies with a trial or a confirmation run running.
        done, total, failed, running: their search trials, summed.
        confirmed, confirming, confirm_left: their confirmation runs done, running and
            still to train at the least, summed.
    """

    studies: int
    finished: int
    busy: int
    done: int
    total: int
    failed: int
    running: int
    confirmed: int
    confirming: int
    confirm_left: int = 0

    @property
    def left(self) -> int:
        """Search trials not yet done (running ones included)."""
        return max(0, self.total - self.done)

    @property
    def work_left(self) -> int:
        """Search trials and confirmation runs still to train, at the least."""
        return self.left + self.confirm_left


def fleet_progress(states: Iterable[StudyProgress]) -> FleetProgress:
    """The sums of many studies' progress.

    Example:
        >>> a = StudyProgress(4, 4, 1, 0, 0, 2, 0.5, 100, 1.0)
        >>> b = StudyProgress(1, 4, 0, 0, 2, 1, 0.4, 80, 1.0, confirming=0)
        >>> f = fleet_progress([a, b])
        >>> (f.studies, f.finished, f.busy, f.done, f.total, f.failed, f.running, f.left)
        (2, 1, 1, 5, 8, 1, 2, 3)
    """
    states = list(states)
    return FleetProgress(
        studies=len(states),
        finished=sum(s.finished for s in states),
        busy=sum(bool(s.running or s.confirming) for s in states),
        done=sum(s.done for s in states),
        total=sum(s.total for s in states),
        failed=sum(s.failed for s in states),
        running=sum(s.running for s in states),
        confirmed=sum(s.confirmed for s in states),
        confirming=sum(s.confirming for s in states),
        confirm_left=sum(s.confirm_left for s in states),
    )


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
    """Where a study stands, from its trial records (``total``: the trials it is to have; the
    repeats of an answer run past it raise it to the trials it has, so that a progress line
    never counts more done than in all)."""
    import optuna

    S = optuna.trial.TrialState
    counted = [r for r in records if r.counts_toward_total()]
    running = sum(r.state == S.RUNNING for r in counted)
    points = front_points(records)
    front = pareto_front(points)
    return StudyProgress(
        done=len(counted) - running,
        total=max(total, len(counted)),
        failed=sum(r.state == S.FAIL for r in counted),
        pruned=sum(r.state == S.PRUNED for r in counted),
        running=running,
        front_size=len(front),
        best_map=max((p.map for p in points), default=None),
        smallest_front_bytes=front[0].bytes if front else None,
        hypervolume=hypervolume(points, full_bytes) if points else None,
        confirmed=sum(r.confirmed for r in records),
        confirming=sum(r.state == S.RUNNING and r.confirm_stage is not None for r in records),
    )
