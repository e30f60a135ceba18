"""``spotpatch confirm``: a study's confirmation, for studies that ran without one.

A study with ``search.confirm_seeds = K`` confirms its answer itself, past its trial budget
(:mod:`spotpatch.search._confirmation`). ``confirm`` does the same for a study that ran without
it (or with other seeds): it records the plan (seeds, where the walk starts, whether it walks)
and runs the confirmation's trials in this process, with the study's recorded spec. Every run is
a trial of the study: a stopped ``confirm`` resumes without retraining a stored run, and a
larger ``--seeds`` adds runs to those stored.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

from spotpatch._errors import UserError
from spotpatch.search import (
    DEFAULT_CONFIRM_MARGIN,
    Answer,
    Confirmation,
    ConfirmPlan,
    StudyController,
    StudyRun,
    TrialRecord,
    confirm_plan,
    run_here,
    study_answer,
    study_meta,
    write_confirm_plan,
)
from spotpatch.studies._setup import confirm_images, evaluator_of, recorded_spec
from spotpatch.studies._storage import (
    DEFAULT_STORAGE,
    check_run_folders,
    load_study,
    open_storage,
)

__all__ = ["ConfirmResult", "confirm_study"]


@dataclasses.dataclass(frozen=True)
class ConfirmResult:
    """What ``confirm`` left: the study's answer afterwards and its confirmation."""

    study: str
    answer: Answer
    confirmation: Confirmation

    def to_json(self) -> dict:
        return {"study": self.study, "answer": self.answer.to_json()}


def confirm_study(
    study_name: str,
    *,
    storage: str = DEFAULT_STORAGE,
    rule: str | None = None,
    seeds: int = 3,
    walk: bool = True,
    progress: bool | None = None,
    on_run: Callable[[TrialRecord], None] | None = None,
) -> ConfirmResult:
    """Confirm a study's answer (or, from ``rule``'s pick, the walk's start) on ``seeds``
    paired deciding seeds, walking up its front while it falls short (``walk``), then measure
    it against the full fine-tune on ``seeds`` fresh paired seeds.

    Args:
        study_name: the study.
        storage: its Optuna storage URL.
        rule: where the walk starts (None: the study's answer on the means of its runs).
        seeds: paired seeds per config, for deciding and again for reporting.
        walk: with False, the start is measured on fresh seeds as it is.
        progress: progress bars while training (None: only on a terminal).
        on_run: called with each confirmation run's record as it is stored.

    Raises:
        UserError: an unknown study, ``seeds`` < 1, a bad rule or one nothing satisfies, no
            full fine-tune, a study file that is gone, or a storage that cannot be written.
    """
    if seeds < 1:
        raise UserError(f"--seeds must be at least 1, got {seeds}")
    opened = open_storage(storage, existing=True)
    study = load_study(study_name, opened)
    check_run_folders(storage, None)  # the runs are stored with the study
    meta = study_meta(study)
    start = None if rule is None else study_answer(study, rule).trial
    study_answer(study)  # no answer (no full fine-tune...): nothing to confirm, said now
    try:
        spec = recorded_spec(meta)
    except UserError as e:
        raise UserError(f"study {study_name!r}: {e}; confirm retrains from it") from None
    evaluator = evaluator_of(spec, progress=progress)
    stored = confirm_plan(study)  # runs already scored on its images keep them
    images = confirm_images(spec) if stored is None else stored.images
    # the study file's margin; without one (a study made in Python), the stored plan's
    fallback = stored.margin if stored else DEFAULT_CONFIRM_MARGIN
    margin = spec.search.confirm_margin if spec else fallback
    write_confirm_plan(study, ConfirmPlan(seeds, start, walk, images, margin))
    controller = StudyController(
        opened,
        study_name,
        evaluator.space,
        tolerance=meta.tolerance,
        confirm_seeds=seeds,
        confirm_margin=margin,
    )
    records = controller.records()
    owed = sum(r.counts_toward_total() for r in records)
    owed += sum(r.confirm_stage is None and r.state.name == "WAITING" for r in records)
    seen = {r.number for r in records if r.confirmed}

    def ran(_: str, __) -> None:
        if on_run is None:
            return
        for r in controller.records():
            if r.confirmed and r.number not in seen:
                seen.add(r.number)
                on_run(r)

    run = StudyRun(controller, owed, lambda: evaluator, seed=meta.seed)
    run_here([run], on_progress=ran)
    answer = study_answer(study)
    state = controller.confirmation()
    if state is None:  # pragma: no cover - study_answer above refused such a study
        raise UserError(f"study {study_name!r}: nothing to confirm")
    return ConfirmResult(study_name, answer, state)
