"""One study per task: the TOML spec (read and written), its storage and artifacts, running
many studies at once (resuming each), selection, the fleet plan, the report across tasks, and
exporting the chosen patch, retraining the selected patch with other seeds (``confirm``).

Imports from ``spaces``, ``evaluators`` and ``search``.
"""

from __future__ import annotations

from spotpatch.studies._artifacts import read_artifact
from spotpatch.studies._bundle import write_bundle
from spotpatch.studies._confirm import ConfirmResult, confirm_study
from spotpatch.studies._export import (
    answer_patch,
    confirmation_json,
    export_patch,
    study_base,
    trial_patch,
)
from spotpatch.studies._onnx import RawSSD, export_onnx
from spotpatch.studies._predict import DEFAULT_SCORE_THRESHOLD, predict_images
from spotpatch.studies._report import (
    FleetReport,
    ReportClaims,
    ReportRow,
    TechniqueResult,
    fleet_report,
    report_of,
)
from spotpatch.studies._report_text import (
    MISSING,
    Cell,
    claim_lines,
    delta_text,
    number_text,
    report_footnotes,
    report_markdown,
    report_table,
    technique_text,
)
from spotpatch.studies._run import open_controller, run_answers, run_studies, run_study
from spotpatch.studies._select import (
    FleetAnswers,
    answer_or_why,
    answers,
    each_study,
    fleet_plan,
    selected_trial,
    spotpatch_studies,
)
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
    open_storage,
    storage_label,
    storage_url,
)

__all__ = [
    "answer_or_why",
    "answers",
    "artifact_store",
    "BACKENDS",
    "base_of",
    "BaseSpec",
    "Cell",
    "claim_lines",
    "confirm_study",
    "confirmation_json",
    "ConfirmResult",
    "create_or_load_study",
    "DataSpec",
    "DEFAULT_SCORE_THRESHOLD",
    "DEFAULT_STORAGE",
    "delta_text",
    "each_study",
    "evaluate_spec",
    "evaluator_of",
    "export_onnx",
    "export_patch",
    "answer_patch",
    "write_bundle",
    "fleet_plan",
    "fleet_report",
    "FleetAnswers",
    "FleetReport",
    "load_spec",
    "load_study",
    "MISSING",
    "number_text",
    "open_controller",
    "open_storage",
    "predict_images",
    "RawSSD",
    "read_artifact",
    "read_config",
    "recorded_spec",
    "report_footnotes",
    "report_markdown",
    "report_of",
    "report_table",
    "ReportClaims",
    "ReportRow",
    "run_answers",
    "run_studies",
    "selected_trial",
    "run_study",
    "SAMPLERS",
    "SearchSpec",
    "SpaceSpec",
    "spec_toml",
    "spotpatch_studies",
    "storage_label",
    "storage_url",
    "study_space",
    "study_base",
    "study_status",
    "StudySpec",
    "StudyStatus",
    "task_of",
    "technique_text",
    "TechniqueResult",
    "TrainSpec",
    "trial_patch",
    "WARM_STARTS",
    "write_spec",
]
