"""How configs are chosen: the study controller, the trial runner, samplers, the differentiable
gate relaxation (warm start), the Ray backend, Pareto analysis, the study's answer and its
confirmation, and the stored format of studies.

Modules: ``_record`` and ``_study_record`` (the stored format of trials and studies: the only
modules that write and read it), ``_answer`` (the study's answer, the trial sets, explicit
rules), ``_confirmation`` (the answer chosen on some seeds, reported on others), ``_seeds``
(every seed), ``_units`` (mAP points, means), ``_controller`` (ask/tell), ``_trial`` and
``_runner`` (a trial's job, run anywhere, and its outcome), ``_heartbeat`` (liveness, host
lock), ``_recovery`` (stale trials), ``_repeats`` (configs run again with other seeds),
``_early_stopping``, ``_progress``, ``_samplers``, ``_neighbours`` (the neighbours sampler,
imported lazily), ``_descent`` (its walk down from the accurate end), ``_relaxation``, ``_ray``
(imported lazily), ``_pareto``, ``_select``.

Imports from ``spaces`` and ``evaluators``.
"""

from __future__ import annotations

from spotpatch.search._answer import (
    Answer,
    AnswerInputs,
    answer_inputs,
    answer_of,
    full_point,
    point_of,
    preset_runs,
    queued_as_preset,
    searched_trials,
    select,
    smallest_within,
    study_answer,
    study_confirmation,
)
from spotpatch.search._artifacts import read_patch, store_patch
from spotpatch.search._confirmation import (
    INTERVAL,
    Confirmation,
    ConfirmJob,
    Noise,
    Paired,
    WalkStep,
    paired,
    walked_out_text,
)
from spotpatch.search._controller import (
    MAX_ATTEMPTS,
    MAX_DUPLICATES,
    WAIT,
    WARM_START,
    StudyController,
)
from spotpatch.search._early_stopping import EarlyStopping
from spotpatch.search._heartbeat import advisory_lock, process_alive
from spotpatch.search._pareto import FrontPoint, hypervolume, knee_point, pareto_front
from spotpatch.search._progress import (
    FleetProgress,
    StudyProgress,
    fleet_progress,
    front_points,
    summarize,
)
from spotpatch.search._record import (
    SOURCES,
    STAGES,
    TrialRecord,
    completed_attrs,
    config_key,
    failed_attrs,
    trial_record,
    trial_records,
)
from spotpatch.search._relaxation import (
    DEFAULT_LAMBDAS,
    RelaxationPhase,
    RelaxationResult,
    relax,
)
from spotpatch.search._repeats import next_repeat
from spotpatch.search._runner import StudyRun, run_here, run_job, run_trials
from spotpatch.search._samplers import SAMPLER_NAMES, make_sampler
from spotpatch.search._seeds import (
    decide_seeds,
    report_seeds,
    sampler_seed,
    trial_seed,
    warm_start_seed,
)
from spotpatch.search._select import (
    FleetPlan,
    SelectionRule,
    parse_rule,
    plan_fleet,
    select_point,
)
from spotpatch.search._study_record import (
    ConfirmPlan,
    ConfirmRun,
    RelaxationPhaseRecord,
    RelaxationRecord,
    StudyMeta,
    confirm_plan,
    confirm_runs,
    is_spotpatch_study,
    relaxation_record,
    relaxation_trials,
    spotpatch_study_names,
    study_meta,
    write_confirm_plan,
    write_confirm_run,
    write_relaxation,
    write_study_meta,
)
from spotpatch.search._trial import TrialJob, TrialOutcome
from spotpatch.search._units import (
    DEFAULT_CONFIRM_MARGIN,
    DEFAULT_TOLERANCE,
    EPS,
    floor,
    from_points,
    mean_sd,
    reaches,
    to_points,
    within,
)
from spotpatch.spaces import parse_bytes

__all__ = [
    "advisory_lock",
    "Answer",
    "answer_inputs",
    "answer_of",
    "AnswerInputs",
    "completed_attrs",
    "config_key",
    "confirm_plan",
    "confirm_runs",
    "Confirmation",
    "ConfirmJob",
    "ConfirmPlan",
    "ConfirmRun",
    "decide_seeds",
    "DEFAULT_LAMBDAS",
    "DEFAULT_CONFIRM_MARGIN",
    "DEFAULT_TOLERANCE",
    "EarlyStopping",
    "EPS",
    "failed_attrs",
    "FleetPlan",
    "FleetProgress",
    "fleet_progress",
    "floor",
    "from_points",
    "front_points",
    "FrontPoint",
    "full_point",
    "hypervolume",
    "INTERVAL",
    "is_spotpatch_study",
    "knee_point",
    "make_sampler",
    "MAX_ATTEMPTS",
    "MAX_DUPLICATES",
    "mean_sd",
    "NeighbourSampler",
    "Noise",
    "next_repeat",
    "Paired",
    "paired",
    "pareto_front",
    "parse_bytes",
    "parse_rule",
    "plan_fleet",
    "point_of",
    "preset_runs",
    "process_alive",
    "queued_as_preset",
    "reaches",
    "read_patch",
    "relax",
    "relaxation_record",
    "relaxation_trials",
    "RelaxationPhase",
    "RelaxationPhaseRecord",
    "RelaxationRecord",
    "RelaxationResult",
    "report_seeds",
    "run_here",
    "run_job",
    "run_on_ray",
    "run_on_ray as run",
    "run_trials",
    "sampler_seed",
    "SAMPLER_NAMES",
    "searched_trials",
    "select",
    "select_point",
    "SelectionRule",
    "smallest_within",
    "SOURCES",
    "spotpatch_study_names",
    "STAGES",
    "study_answer",
    "study_confirmation",
    "study_meta",
    "StudyController",
    "store_patch",
    "StudyMeta",
    "StudyProgress",
    "StudyRun",
    "summarize",
    "to_points",
    "trial_record",
    "trial_records",
    "trial_seed",
    "TrialJob",
    "TrialOutcome",
    "TrialRecord",
    "WAIT",
    "WalkStep",
    "walked_out_text",
    "WARM_START",
    "warm_start_seed",
    "within",
    "write_confirm_plan",
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
