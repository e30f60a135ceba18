"""How configs are chosen: the study controller, samplers, the differentiable gate relaxation
(warm start), the Ray backend and Pareto analysis. Imports from ``spaces`` and ``evaluators``.
"""

from __future__ import annotations

from spotpatch.search._controller import (
    EarlyStopping,
    StudyController,
    StudyProgress,
    counts_toward_total,
    front_points,
    summarize,
)
from spotpatch.search._pareto import FrontPoint, hypervolume, knee_point, pareto_front
from spotpatch.search._relaxation import (
    DEFAULT_LAMBDAS,
    RelaxationPhase,
    RelaxationResult,
    relax,
)
from spotpatch.search._samplers import SAMPLER_NAMES, make_sampler
from spotpatch.search._select import (
    DEFAULT_RULE,
    FleetPlan,
    SelectionRule,
    parse_bytes,
    parse_rule,
    plan_fleet,
    select_point,
)

__all__ = [
    "DEFAULT_RULE",
    "FleetPlan",
    "SelectionRule",
    "parse_bytes",
    "parse_rule",
    "plan_fleet",
    "select_point",
    "DEFAULT_LAMBDAS",
    "EarlyStopping",
    "FrontPoint",
    "RelaxationPhase",
    "RelaxationResult",
    "SAMPLER_NAMES",
    "StudyController",
    "StudyProgress",
    "counts_toward_total",
    "front_points",
    "summarize",
    "hypervolume",
    "knee_point",
    "make_sampler",
    "pareto_front",
    "relax",
    "run_on_ray",
]


def run_on_ray(*args, **kwargs):
    """Run trials on Ray Tune (imported lazily: Ray is heavy)."""
    from spotpatch.search._ray import run_on_ray as run

    return run(*args, **kwargs)
