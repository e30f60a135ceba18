"""Picking trials of stored studies: by a selection rule, or one per study for a fleet plan."""

from __future__ import annotations

from spotpatch._errors import UserError
from spotpatch.search import (
    FleetPlan,
    TrialRecord,
    front_points,
    full_fine_tune_map,
    parse_rule,
    plan_fleet,
    select_point,
    spotpatch_study_names,
    study_meta,
    trial_records,
)
from spotpatch.studies._storage import load_study

__all__ = ["selected_trial", "spotpatch_studies", "fleet_plan"]


def selected_trial(study, rule: str) -> TrialRecord:
    """The completed trial of ``study`` that ``rule`` picks.

    Raises:
        UserError: a bad rule, an empty study, or nothing satisfying the rule.
    """
    parsed = parse_rule(rule)
    meta = study_meta(study)
    records = trial_records(study)
    points = front_points(records)
    if not points:
        raise UserError(f"study {study.study_name!r} has no completed trial yet")
    point = select_point(points, parsed, meta.full_bytes, full_map=full_fine_tune_map(records))
    return next(r for r in records if r.number == point.number)


def spotpatch_studies(storage) -> list:
    """Every spotpatch study in a storage, by name."""
    return [load_study(name, storage) for name in spotpatch_study_names(storage)]


def fleet_plan(storage, budget: int) -> FleetPlan:
    """One front point per spotpatch study maximizing the mean mAP within ``budget`` bytes."""
    if budget <= 0:
        raise UserError(f"--budget must be a positive byte count, got {budget}")
    studies = spotpatch_studies(storage)
    if not studies:
        raise UserError("no spotpatch study in this storage: run one with `spotpatch run`")
    fronts = {s.study_name: front_points(trial_records(s)) for s in studies}
    full = {s.study_name: study_meta(s).full_bytes for s in studies}
    return plan_fleet(fronts, budget, full)
