"""Which config to run again with another seed, so that selection does not rest on luck.

One run of a config moves by about a point of mAP from seed to seed, the size of the tolerance
a selection rule uses: the smallest patch within a point of the full fine-tune is then the
luckiest run among many small ones, and the full fine-tune's own run sets the mark. With
``repeats`` > 1 (``search.repeats``), before the sampler proposes a new config the study runs
again, until each has ``repeats`` runs,

1. the full fine-tune (the ``full`` preset's config): its mean is the mark, and
2. the config the ``within-full`` rule picks at the mean of its runs (the smallest within
   ``tolerance`` of that mark).

A pick whose next run pulls its mean below the mark stops being the pick; the next smallest
config that reaches the mark is then run again. A pick that the study's last trials find gets
its repeats past the study's total (:meth:`StudyController.next_work`), so that a study does not
end on one run of its pick. Every rule and the descent read configs at the mean of their runs
(:func:`~spotpatch.search.front_points`), so each repeat is one trial spent where the study's
answer is decided. A config whose run failed for good (its attempts spent) is not repeated.
"""

from __future__ import annotations

from collections.abc import Sequence

from spotpatch.search._answer import full_point, smallest_within
from spotpatch.search._progress import front_points
from spotpatch.search._record import TrialRecord
from spotpatch.search._units import DEFAULT_TOLERANCE

__all__ = ["next_repeat"]


def next_repeat(
    records: Sequence[TrialRecord], repeats: int, tolerance: float = DEFAULT_TOLERANCE
) -> TrialRecord | None:
    """The trial whose config should run again now (see the module's doc), or None.
    ``tolerance``: mAP points, as the answer's.

    A config counts its completed runs, those queued or running (so parallel workers do not
    run it more than ``repeats`` times) and those stopped early (a retried repeat may be).
    """
    import optuna

    if repeats <= 1:
        return None
    S = optuna.trial.TrialState
    searched = [r for r in records if r.sites is not None and r.confirm_stage is None]
    live = [
        r
        for r in searched
        if r.complete or (r.state in (S.RUNNING, S.WAITING, S.PRUNED) and r.duplicate_of is None)
    ]
    given_up = [r.sites for r in searched if r.state == S.FAIL and not r.retried]

    def due(record: TrialRecord) -> bool:
        runs = sum(r.sites == record.sites for r in live)
        return runs < repeats and record.sites not in given_up

    full = [r for r in records if r.complete and r.preset == "full"]
    if not full:
        return None
    if due(full[0]):
        return full[0]
    full_map = full_point(records).map
    pick = smallest_within(front_points(records), full_map, tolerance)
    if pick is None:
        return None
    record = next(r for r in records if r.number == pick.number)
    return record if due(record) else None
