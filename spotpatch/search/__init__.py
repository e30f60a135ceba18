"""How configs are chosen: the study controller, the trial runner, samplers, the differentiable
gate relaxation (warm start), the Ray backend, Pareto analysis and selection, and the stored
format of studies (``_record``: the one module that writes and reads trial and study records).

Modules: ``_record`` (stored format), ``_controller`` (ask/tell), ``_trial`` and ``_runner`` (a
trial's job, run anywhere, and its outcome), ``_heartbeat`` (liveness, host lock),
``_recovery`` (stale trials), ``_repeats`` (configs run again with other seeds),
``_early_stopping``, ``_progress``, ``_samplers``,
``_neighbours`` (the neighbours sampler, imported lazily), ``_relaxation``, ``_ray``
(imported lazily), ``_pareto``, ``_select``.

Imports from ``spaces`` and ``evaluators``.
"""

from __future__ import annotations

from spotpatch.search._controller import (
    MAX_ATTEMPTS,
    MAX_DUPLICATES,
    WAIT,
    WARM_START,
    StudyController,
)
from spotpatch.search._early_stopping import EarlyStopping
from spotpatch.search._heartbeat import advisory_lock
from spotpatch.search._pareto import FrontPoint, hypervolume, knee_point, pareto_front
from spotpatch.search._progress import StudyProgress, front_points, summarize
from spotpatch.search._record import (
    SOURCES,
    ConfirmRun,
    RelaxationPhaseRecord,
    RelaxationRecord,
    StudyMeta,
    TrialRecord,
    completed_trial,
    confirm_runs,
    failed_trial,
    is_spotpatch_study,
    relaxation_record,
    relaxation_trials,
    spotpatch_study_names,
    study_meta,
    trial_record,
    trial_records,
    write_confirm_run,
    write_relaxation,
    write_study_meta,
)
from spotpatch.search._relaxation import (
    DEFAULT_LAMBDAS,
    RelaxationPhase,
    RelaxationResult,
    relax,
)
from spotpatch.search._repeats import REPEAT_TOLERANCE, next_repeat
from spotpatch.search._runner import StudyRun, run_here, run_job, run_trials
from spotpatch.search._samplers import SAMPLER_NAMES, make_sampler
from spotpatch.search._select import (
    DEFAULT_RULE,
    FleetPlan,
    SelectionRule,
    full_fine_tune_map,
    parse_rule,
    plan_fleet,
    select_point,
)
from spotpatch.search._trial import TrialJob, TrialOutcome
from spotpatch.spaces import parse_bytes

__all__ = [
    "REPEAT_TOLERANCE",
    "next_repeat",
    "advisory_lock",
    "DEFAULT_LAMBDAS",
    "MAX_DUPLICATES",
    "MAX_ATTEMPTS",
    "NeighbourSampler",
    "DEFAULT_RULE",
    "ConfirmRun",
    "EarlyStopping",
    "FleetPlan",
    "FrontPoint",
    "RelaxationPhase",
    "RelaxationPhaseRecord",
    "RelaxationRecord",
    "RelaxationResult",
    "SAMPLER_NAMES",
    "SOURCES",
    "SelectionRule",
    "StudyController",
    "StudyMeta",
    "StudyProgress",
    "StudyRun",
    "TrialJob",
    "TrialOutcome",
    "TrialRecord",
    "WAIT",
    "WARM_START",
    "completed_trial",
    "confirm_runs",
    "failed_trial",
    "front_points",
    "hypervolume",
    "is_spotpatch_study",
    "knee_point",
    "make_sampler",
    "parse_bytes",
    "full_fine_tune_map",
    "parse_rule",
    "pareto_front",
    "plan_fleet",
    "relax",
    "relaxation_record",
    "relaxation_trials",
    "run_here",
    "run_job",
    "run_on_ray",
    "run_trials",
    "select_point",
    "spotpatch_study_names",
    "study_meta",
    "summarize",
    "trial_record",
    "trial_records",
    "write_confirm_run",
    "write_relaxation",
    "write_study_meta",
]


def run_on_ray(*args, **kwargs):
    """Run trials on Ray Tune (imported lazily: Ray is heavy)."""
    from spotpatch.search._ray import run_on_ray as run

    return run(*args, **kwargs)


def __getattr__(name: str):
    # The neighbours sampler subclasses Optuna's: importing it imports Optuna, so only on use.
    if name == "NeighbourSampler":
        from spotpatch.search._neighbours import NeighbourSampler

        return NeighbourSampler
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
