"""Picking trials of stored studies: by a selection rule, or one per study for a fleet plan."""

from __future__ import annotations

from spotpatch._errors import UserError
from spotpatch.search import FleetPlan, front_points, parse_rule, plan_fleet, select_point
from spotpatch.studies._storage import list_study_names, load_study, study_meta

__all__ = ["selected_trial", "spotpatch_studies", "fleet_plan"]


def selected_trial(study, rule: str):
    """The completed trial of ``study`` that ``rule`` picks (a ``FrozenTrial``).

    Raises:
        UserError: a bad rule, an empty study, or nothing satisfying the rule.
    """
    parsed = parse_rule(rule)
    meta = study_meta(study)
    trials = study.get_trials(deepcopy=False)
    points = front_points(trials)
    if not points:
        raise UserError(f"study {study.study_name!r} has no completed trial yet")
    point = select_point(points, parsed, meta.full_bytes)
    return next(t for t in trials if t.number == point.number)


def spotpatch_studies(storage) -> list:
    """Every spotpatch study in a storage, by name."""
    studies = [load_study(name, storage) for name in sorted(list_study_names(storage))]
    return [s for s in studies if "spotpatch" in s.user_attrs]


def fleet_plan(storage, budget: int) -> FleetPlan:
    """One front point per spotpatch study maximizing the mean mAP within ``budget`` bytes."""
    if budget <= 0:
        raise UserError(f"--budget must be a positive byte count, got {budget}")
    studies = spotpatch_studies(storage)
    if not studies:
        raise UserError("no spotpatch study in this storage: run one with `spotpatch run`")
    fronts = {s.study_name: front_points(s.get_trials(deepcopy=False)) for s in studies}
    full = {s.study_name: study_meta(s).full_bytes for s in studies}
    return plan_fleet(fronts, budget, full)
