"""Study status: one record per study in a storage."""

from __future__ import annotations

from dataclasses import asdict, dataclass

from spotpatch.search import (
    StudyProgress,
    relaxation_record,
    relaxation_trials,
    spotpatch_study_names,
    study_meta,
    summarize,
    trial_records,
)
from spotpatch.studies._storage import load_study

__all__ = ["StudyStatus", "study_status"]


@dataclass(frozen=True)
class StudyStatus:
    """A study at a glance.

    Attributes:
        name: the study (its task).
        progress: trial counts, front size, best mAP, smallest front patch, hypervolume.
        target: the spec's trial count at the last run (None when unknown).
        relaxation_seconds: wall time of the warm start, when it ran.
        relaxation_trials: the warm start's cost in trial-equivalents (its seconds over the
            mean seconds of a completed trial).
    """

    name: str
    progress: StudyProgress
    relaxation_seconds: float | None
    relaxation_trials: float | None

    def to_json(self) -> dict:
        return {
            "name": self.name,
            **asdict(self.progress),
            "relaxation_seconds": self.relaxation_seconds,
            "relaxation_trials": self.relaxation_trials,
        }


def study_status(storage) -> list[StudyStatus]:
    """The status of every spotpatch study in a storage, by name."""
    out = []
    for name in spotpatch_study_names(storage):
        study = load_study(name, storage)
        records = trial_records(study)
        progress = summarize(records, 0, study_meta(study).full_bytes)
        progress = StudyProgress(**{**asdict(progress), "total": progress.done + progress.running})
        relaxation = relaxation_record(study)
        seconds = relaxation.seconds if relaxation is not None else None
        out.append(StudyStatus(name, progress, seconds, relaxation_trials(relaxation, records)))
    return out
