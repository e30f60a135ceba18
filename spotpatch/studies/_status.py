"""Study status: one record per study in a storage."""

from __future__ import annotations

from dataclasses import asdict, dataclass

from spotpatch.search import StudyProgress, summarize
from spotpatch.studies._storage import RELAXATION_KEY, list_study_names, load_study, study_meta

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
    import optuna

    out = []
    for name in sorted(list_study_names(storage)):
        study = load_study(name, storage)
        if "spotpatch" not in study.user_attrs:
            continue
        meta = study_meta(study)
        trials = study.get_trials(deepcopy=False)
        progress = summarize(trials, 0, meta.full_bytes)
        progress = StudyProgress(**{**asdict(progress), "total": progress.done + progress.running})
        relaxation = study.user_attrs.get(RELAXATION_KEY)
        seconds = relaxation["seconds"] if relaxation else None
        costs = [
            t.user_attrs.get("train_seconds", 0) + t.user_attrs.get("eval_seconds", 0)
            for t in trials
            if t.state == optuna.trial.TrialState.COMPLETE
        ]
        equivalents = seconds / (sum(costs) / len(costs)) if seconds and costs else None
        out.append(StudyStatus(name, progress, seconds, equivalents))
    return out
