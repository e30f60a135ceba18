"""One study per task: the TOML spec (read and written), its storage and artifacts, running
many studies at once (resuming each), selection, the fleet plan, the report across tasks, and
exporting the chosen patch, retraining the selected patch with other seeds (``confirm``).

Imports from ``spaces``, ``evaluators`` and ``search``.
"""

from __future__ import annotations

from spotpatch.studies._artifacts import read_artifact
from spotpatch.studies._confirm import (
    CONFIRM_SEED,
    Confirmation,
    ConfirmedConfig,
    confirm_study,
)
from spotpatch.studies._export import export_patch, trial_patch
from spotpatch.studies._onnx import RawSSD, export_onnx
from spotpatch.studies._predict import DEFAULT_SCORE_THRESHOLD, predict_images
from spotpatch.studies._report import (
    MATCH_TOLERANCE,
    Confirmed,
    FleetReport,
    ReportClaims,
    ReportRow,
    TechniqueResult,
    claim_lines,
    delta_text,
    fleet_report,
    held_header,
    held_text,
    report_markdown,
    report_of,
    technique_text,
)
from spotpatch.studies._run import open_controller, run_studies, run_study
from spotpatch.studies._select import fleet_plan, selected_trial, spotpatch_studies
from spotpatch.studies._setup import (
    base_of,
    evaluate_spec,
    evaluator_of,
    read_config,
    recorded_spec,
    study_space,
    task_of,
)
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
from spotpatch.studies._spec_writer import spec_toml, write_spec
from spotpatch.studies._status import StudyStatus, study_status
from spotpatch.studies._storage import (
    DEFAULT_STORAGE,
    artifact_store,
    create_or_load_study,
    load_study,
    open_artifact,
    open_storage,
    storage_url,
)

__all__ = [
    "CONFIRM_SEED",
    "Confirmation",
    "ConfirmedConfig",
    "confirm_study",
    "MATCH_TOLERANCE",
    "FleetReport",
    "ReportClaims",
    "ReportRow",
    "technique_text",
    "held_header",
    "held_text",
    "TechniqueResult",
    "claim_lines",
    "Confirmed",
    "delta_text",
    "fleet_report",
    "report_markdown",
    "report_of",
    "DEFAULT_SCORE_THRESHOLD",
    "RawSSD",
    "export_onnx",
    "export_patch",
    "trial_patch",
    "predict_images",
    "fleet_plan",
    "selected_trial",
    "spotpatch_studies",
    "DEFAULT_STORAGE",
    "StudyStatus",
    "artifact_store",
    "create_or_load_study",
    "load_study",
    "open_controller",
    "open_artifact",
    "read_artifact",
    "open_storage",
    "storage_url",
    "run_studies",
    "run_study",
    "study_status",
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
    "recorded_spec",
    "spec_toml",
    "study_space",
    "task_of",
    "write_spec",
]
