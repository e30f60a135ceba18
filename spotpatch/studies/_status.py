"""Study status: one record per study in a storage, with its answer and what it cost."""

from __future__ import annotations

from dataclasses import asdict, dataclass

from spotpatch._errors import UserError
from spotpatch.search import (
    Answer,
    StudyProgress,
    answer_inputs,
    relaxation_record,
    relaxation_trials,
    select,
    study_meta,
    summarize,
)
from spotpatch.studies._select import each_study

__all__ = ["StudyStatus", "study_status"]


@dataclass(frozen=True)
class StudyStatus:
    """A study at a glance.

    Attributes:
        name: the study (its task).
        progress: trial counts, front size, best mAP, smallest front patch, hypervolume,
            confirmation runs.
        relaxation_seconds: wall time of the warm start, when it ran.
        relaxation_trials: the warm start's cost in trial-equivalents (its seconds over the
            mean seconds of a completed trial).
        answer: the study's answer (None: none yet, see ``note``).
        note: why there is no answer.
        full_bytes: the full detector's bytes (the answer's size is a share of it).
    """

    name: str
    progress: StudyProgress
    relaxation_seconds: float | None
    relaxation_trials: float | None
    answer: Answer | None = None
    note: str | None = None
    full_bytes: int = 0

    @property
    def cost(self) -> float:
        """Everything the study trained, in trial-equivalents: its trials, its warm start and
        its confirmation runs (each as long as a trial)."""
        p = self.progress
        return p.done + (self.relaxation_trials or 0.0) + p.confirmed

    def to_json(self) -> dict:
        return {
            "name": self.name,
            **asdict(self.progress),
            "relaxation_seconds": self.relaxation_seconds,
            "relaxation_trials": self.relaxation_trials,
            "cost_trials": self.cost,
            "answer": None if self.answer is None else self.answer.to_json(),
            "answer_note": self.note,
        }


def study_status(storage) -> list[StudyStatus]:
    """The status of every spotpatch study in a storage, by name (none: an empty list)."""
    try:
        studies = list(each_study(storage))
    except UserError:
        return []
    out = []
    for study in studies:
        inputs = answer_inputs(study)
        full_bytes = study_meta(study).full_bytes
        progress = summarize(inputs.records, 0, full_bytes)
        relaxation = relaxation_record(study)
        seconds = relaxation.seconds if relaxation is not None else None
        answer, note = None, None
        try:
            answer = select(inputs)
        except UserError as e:
            note = str(e)
        out.append(
            StudyStatus(
                study.study_name,
                progress,
                seconds,
                relaxation_trials(relaxation, inputs.records),
                answer,
                note,
                full_bytes,
            )
        )
    return out
