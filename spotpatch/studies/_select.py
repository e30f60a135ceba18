"""The studies of a storage, each one's answer (or a rule's pick), and the fleet plan."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

from spotpatch._errors import UserError
from spotpatch.search import (
    Answer,
    FleetPlan,
    FrontPoint,
    TrialRecord,
    front_points,
    plan_fleet,
    spotpatch_study_names,
    study_answer,
    study_meta,
    trial_records,
)
from spotpatch.studies._storage import load_study, storage_label

__all__ = [
    "FleetAnswers",
    "answer_or_why",
    "answers",
    "each_study",
    "fleet_plan",
    "selected_trial",
    "spotpatch_studies",
]


def spotpatch_studies(storage) -> list:
    """Every spotpatch study in a storage, by name."""
    return [load_study(name, storage) for name in spotpatch_study_names(storage)]


def each_study(storage, names=None) -> Iterator:
    """The spotpatch studies of a storage (``names``: only these, in that order), each loaded
    when reached.

    Raises:
        UserError: no spotpatch study in the storage, or a name that is not one of them.
    """
    known = spotpatch_study_names(storage)
    if not known:
        label = storage_label(storage)
        raise UserError(f"no spotpatch study in {label}: run one with `spotpatch run`")
    for name in names if names is not None else known:
        yield load_study(name, storage)


def answer_or_why(study, rule=None) -> Answer | str:
    """A study's answer (``rule`` None) or the trial ``rule`` picks, or why there is none."""
    try:
        return study_answer(study, rule)
    except UserError as e:
        return str(e)


def selected_trial(study, rule=None) -> TrialRecord:
    """The trial record of a study's answer (``rule`` None) or of the trial ``rule`` picks: the
    one whose stored tensors ``export`` writes.

    Raises:
        UserError: a bad rule, no trial, or none the rule (or the answer) can take.
    """
    number = study_answer(study, rule).trial
    return next(r for r in trial_records(study) if r.number == number)


def answers(storage, rule=None) -> dict[str, Answer | str]:
    """:func:`answer_or_why` for every study of a storage, by name."""
    return {s.study_name: answer_or_why(s, rule) for s in each_study(storage)}


@dataclass(frozen=True)
class FleetAnswers:
    """Every study's answer as a fleet: what the answers weigh together.

    Attributes:
        choices: study name -> its answer (studies without one are in ``missing``).
        missing: study name -> why it has no answer.
        total_bytes: the answers' patch bytes together.
        mean_map: their mean val mAP (the means of their search runs).
        full_bytes: one full detector per answered task.
    """

    choices: dict[str, Answer]
    missing: dict[str, str]
    total_bytes: int
    mean_map: float | None
    full_bytes: int

    def to_json(self) -> dict:
        return {
            "budget": None,
            "total_bytes": self.total_bytes,
            "mean_map": self.mean_map,
            "full_bytes": self.full_bytes,
            "choices": {
                name: {"trial": a.trial, "map": a.map, "patch_bytes": a.patch_bytes}
                for name, a in self.choices.items()
            },
            "missing": self.missing,
        }


def fleet_plan(storage, budget: int | None = None) -> FleetPlan | FleetAnswers:
    """Without ``budget``: every study's answer, as a fleet. With it: one front point per
    spotpatch study maximizing the mean mAP within ``budget`` bytes."""
    if budget is not None and budget <= 0:
        raise UserError(f"--budget must be a positive byte count, got {budget}")
    studies = list(each_study(storage))
    full = {s.study_name: study_meta(s).full_bytes for s in studies}
    if budget is None:
        found = {s.study_name: answer_or_why(s) for s in studies}
        chosen = {n: a for n, a in found.items() if isinstance(a, Answer)}
        maps = [a.map for a in chosen.values()]
        return FleetAnswers(
            choices=chosen,
            missing={n: a for n, a in found.items() if not isinstance(a, Answer)},
            total_bytes=sum(a.patch_bytes for a in chosen.values()),
            mean_map=sum(maps) / len(maps) if maps else None,
            full_bytes=sum(full[n] for n in chosen),
        )
    fronts: dict[str, list[FrontPoint]] = {
        s.study_name: front_points(trial_records(s)) for s in studies
    }
    return plan_fleet(fronts, budget, full)
