"""One study per task: the TOML spec, its storage, resuming and exporting the chosen patch.

Imports from ``spaces``, ``evaluators`` and ``search``.
"""

from __future__ import annotations

from spotpatch.studies._setup import base_of, evaluate_spec, evaluator_of, read_config, task_of
from spotpatch.studies._spec import (
    BACKENDS,
    SAMPLERS,
    WARM_STARTS,
    BaseSpec,
    DataSpec,
    SearchSpec,
    SpaceSpec,
    StudySpec,
    TrainSpec,
    load_spec,
)

__all__ = [
    "BACKENDS",
    "SAMPLERS",
    "WARM_STARTS",
    "BaseSpec",
    "DataSpec",
    "SearchSpec",
    "SpaceSpec",
    "StudySpec",
    "TrainSpec",
    "base_of",
    "evaluate_spec",
    "evaluator_of",
    "load_spec",
    "read_config",
    "task_of",
]
