"""A study's answer: the one patch it names, and the trial sets it is decided on.

**The answer** is the smallest patch, among every trial of the study (searched or preset), whose
mAP is within the study's tolerance of the full fine-tune's, decided on the means of the runs
each config has in the search (trials and their repeats). A study that confirmed it
(:mod:`._confirmation`) names the config its confirmation settled on instead, with the paired Δ
measured on seeds that made no decision.

Every command that names a patch asks here: ``status``, ``export``, ``report``, ``plan``, the
dashboard and ``confirm``. An explicit selection rule (``--select``) goes through :func:`select`
here too, over the same points, so two commands given the same rule name the same trial.

The trial sets the report compares are defined here as well: *searched* trials (what the search
proposed: the warm start's and the sampler's, with their retries and repeats) and *presets*
(the fixed recipes queued as reference points, with theirs).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from spotpatch._errors import UserError
from spotpatch.search._confirmation import Confirmation, confirmation
from spotpatch.search._pareto import FrontPoint, pareto_front
from spotpatch.search._progress import front_points
from spotpatch.search._record import TrialRecord, trial_records
from spotpatch.search._select import SelectionRule, parse_rule, select_point
from spotpatch.search._study_record import (
    ConfirmPlan,
    ConfirmRun,
    confirm_plan,
    confirm_runs,
    study_meta,
)
from spotpatch.search._units import within

__all__ = [
    "Answer",
    "AnswerInputs",
    "answer_inputs",
    "answer_of",
    "full_point",
    "point_of",
    "queued_as_preset",
    "study_confirmation",
    "preset_runs",
    "searched_trials",
    "select",
    "smallest_within",
    "study_answer",
]


@dataclass(frozen=True)
class Answer:
    """The patch a study names (or a rule picks): one config, at the mean of its search runs.

    Attributes:
        trial: the config's first trial (its stored tensors are the patch ``export`` writes).
        sites: the config (site -> kind).
        patch_bytes: its patch payload.
        map: the mean val mAP of its runs in the search; ``runs`` how many.
        preset: the fixed recipe it equals, if any.
        full_map: the full fine-tune's mean val mAP in the search (None: the study has none).
        tolerance: mAP points the answer may lose against the full fine-tune.
        rule: ``answer``, or the explicit rule that picked it.
        confirmation: the study's confirmation where it concerns this config (its walk may
            still be deciding); None when the study has none or it settled elsewhere.
    """

    trial: int
    sites: Mapping[str, str]
    patch_bytes: int
    map: float
    runs: int
    preset: str | None
    full_map: float | None
    tolerance: float
    rule: str
    confirmation: Confirmation | None = None

    @property
    def holds(self) -> bool | None:
        """Whether the fresh seeds put it within the tolerance (None: not measured)."""
        return None if self.confirmation is None else self.confirmation.holds

    def to_json(self) -> dict[str, Any]:
        return {
            "trial": self.trial,
            "patch_bytes": self.patch_bytes,
            "map": self.map,
            "runs": self.runs,
            "preset": self.preset,
            "full_map": self.full_map,
            "tolerance": self.tolerance,
            "rule": self.rule,
            "confirmation": None if self.confirmation is None else self.confirmation.to_json(),
        }


# -- which trials count as what -----------------------------------------------------------------
def _queued_after(record: TrialRecord) -> int | None:
    """The trial whose config a retry or a repeat runs again, else None."""
    return {"retry": record.retry_of, "repeat": record.repeat_of}.get(record.source)


def queued_as_preset(records: Sequence[TrialRecord]) -> set[int]:
    """The trials queued as presets, and the retries and repeats of those."""
    by_number = {r.number: r for r in records}
    out = set()
    for r in records:
        origin = r
        while (back := _queued_after(origin)) in by_number:
            origin = by_number[back]
        if origin.source == "preset":
            out.add(r.number)
    return out


def searched_trials(records: Sequence[TrialRecord]) -> list[TrialRecord]:
    """The search's scored proposals: completed trials not queued as presets (nor retries of
    those), and the sampler's proposals of configs trained before (they hold that result)."""
    presets = queued_as_preset(records)
    return [
        r
        for r in records
        if (r.complete or (r.duplicate_of is not None and r.map is not None))
        and r.number not in presets
    ]


def preset_runs(records: Sequence[TrialRecord]) -> dict[str, list[TrialRecord]]:
    """Each preset's completed runs among the trials queued as presets (and their repeats), in
    trial order, by preset name."""
    presets = queued_as_preset(records)
    out: dict[str, list[TrialRecord]] = {}
    for r in records:
        if r.complete and r.preset is not None and r.number in presets:
            out.setdefault(r.preset, []).append(r)
    return out


def full_point(records: Sequence[TrialRecord]) -> FrontPoint | None:
    """The full fine-tune's config as a point at the mean of its runs (queued as the preset,
    proposed, or repeated), or None when the study has none."""
    full = next((r for r in records if r.complete and r.preset == "full"), None)
    return None if full is None else point_of(full.number, records)


def point_of(
    number: int, records: Sequence[TrialRecord], points: Sequence[FrontPoint] | None = None
) -> FrontPoint | None:
    """Trial ``number``'s config as a point at the mean of its runs (numbered by the first);
    ``points``: :func:`~spotpatch.search.front_points` of ``records``, when at hand."""
    by_number = {r.number: r for r in records}
    record = by_number.get(number)
    if record is None:
        return None
    points = front_points(records) if points is None else points
    return next((p for p in points if by_number[p.number].key == record.key), None)


def smallest_within(
    points: Sequence[FrontPoint], full_map: float, tolerance: float
) -> FrontPoint | None:
    """The smallest of ``points`` (at their means) within ``tolerance`` mAP points of
    ``full_map``, or None."""
    return next((p for p in pareto_front(points) if within(p.map, full_map, tolerance)), None)


# -- the answer ---------------------------------------------------------------------------------
@dataclass(frozen=True)
class AnswerInputs:
    """What a study's answer is decided from, read once from the study."""

    records: tuple[TrialRecord, ...]
    full_bytes: int
    tolerance: float
    seed: int
    plan: ConfirmPlan | None = None
    legacy: tuple[ConfirmRun, ...] = ()


def answer_inputs(study, records: Sequence[TrialRecord] | None = None) -> AnswerInputs:
    """Everything :func:`answer_of` needs, read from a stored study."""
    meta = study_meta(study)
    return AnswerInputs(
        records=tuple(trial_records(study) if records is None else records),
        full_bytes=meta.full_bytes,
        tolerance=meta.tolerance,
        seed=meta.seed,
        plan=confirm_plan(study),
        legacy=confirm_runs(study),
    )


def _point_answer(
    point: FrontPoint,
    records: Sequence[TrialRecord],
    full: FrontPoint | None,
    tolerance: float,
    rule: str,
    confirmed: Confirmation | None,
) -> Answer:
    record = next(r for r in records if r.number == point.number)
    if confirmed is not None and confirmed.trial not in (None, point.number):
        confirmed = None  # it settled on another config: nothing it measured is this one's
    if confirmed is not None and confirmed.trial is None:
        last = confirmed.walk[-1].trial if confirmed.walk else None
        confirmed = confirmed if last == point.number else None
    return Answer(
        trial=point.number,
        sites=dict(record.sites or {}),
        patch_bytes=point.bytes,
        map=point.map,
        runs=point.runs,
        preset=record.preset,
        full_map=None if full is None else full.map,
        tolerance=tolerance,
        rule=rule,
        confirmation=confirmed,
    )


def study_confirmation(
    inputs: AnswerInputs, *, plan: ConfirmPlan | None = None, tolerance: float | None = None
):
    """The study's confirmation under ``plan`` and ``tolerance`` (default: the study's), or None
    when it has none or cannot have one (no full fine-tune, nothing within the tolerance)."""
    if tolerance is not None:
        inputs = dataclasses.replace(inputs, tolerance=tolerance)
    plan = plan or inputs.plan
    if plan is None:
        return None
    records = inputs.records
    points = front_points(records)
    full = full_point(records)
    if full is None:
        return None
    if plan.start is not None:
        start = point_of(plan.start, records)
    else:
        start = smallest_within(points, full.map, inputs.tolerance)
    if start is None:
        return None
    return confirmation(
        pareto_front(points),
        start,
        full,
        {r.number: dict(r.sites or {}) for r in records if r.sites is not None},
        records,
        plan,
        seed=inputs.seed,
        tolerance=inputs.tolerance,
        legacy=inputs.legacy,
        points=points,
    )


def answer_of(inputs: AnswerInputs) -> Answer:
    """The study's answer (see the module's doc).

    Raises:
        UserError: no completed trial, no run of the full fine-tune, or none within the
            tolerance (the message says what is there).
    """
    records = inputs.records
    points = front_points(records)
    if not points:
        raise UserError("the study has no completed trial yet")
    full = full_point(records)
    if full is None:
        raise UserError(
            "the answer is measured against the full fine-tune, and the study has no run of "
            "it: run the study with the preset full"
        )
    confirmed = study_confirmation(inputs)
    if confirmed is not None:
        if confirmed.trial is not None:
            number = confirmed.trial
        elif confirmed.walk:
            number = confirmed.walk[-1].trial
        else:
            number = None
        point = next((p for p in points if p.number == number), None)
        if point is not None:
            return _point_answer(point, records, full, inputs.tolerance, "answer", confirmed)
    point = smallest_within(points, full.map, inputs.tolerance)
    if point is None:  # the full fine-tune's own runs are within any tolerance of their mean
        raise UserError(f"no trial comes within {inputs.tolerance:g} points of the full fine-tune")
    return _point_answer(point, records, full, inputs.tolerance, "answer", None)


def select(inputs: AnswerInputs, rule: SelectionRule | str | None = None) -> Answer:
    """The study's answer (``rule`` None), or the trial ``rule`` picks among the same points
    (every trial of the study at the means of its runs); the confirmation comes along where it
    concerns the picked config.

    Raises:
        UserError: a bad rule, no trial, or none satisfies the rule.
    """
    if rule is None:
        return answer_of(inputs)
    parsed = parse_rule(rule) if isinstance(rule, str) else rule
    records = inputs.records
    points = front_points(records)
    if not points:
        raise UserError("the study has no completed trial yet")
    full = full_point(records)
    point = select_point(
        points, parsed, inputs.full_bytes, full_map=None if full is None else full.map
    )
    return _point_answer(
        point, records, full, inputs.tolerance, str(parsed), study_confirmation(inputs)
    )


def study_answer(study, rule: SelectionRule | str | None = None) -> Answer:
    """:func:`select` on a stored study; errors name the study."""
    try:
        return select(answer_inputs(study), rule)
    except UserError as e:
        raise UserError(f"study {study.study_name!r}: {e}") from None
