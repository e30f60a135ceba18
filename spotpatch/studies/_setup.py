"""From a spec to what scores its configs: the base, the task and the patch evaluator."""

from __future__ import annotations

from pathlib import Path

from spotpatch._errors import UserError
from spotpatch._files import read_json
from spotpatch.evaluators import (
    Base,
    EvalResult,
    PatchEvaluator,
    Task,
    get_detector,
    load_base,
    load_task,
)
from spotpatch.search import StudyMeta
from spotpatch.spaces import PatchConfig, PatchSpace
from spotpatch.studies._spec import StudySpec, load_spec, spec_from_text

__all__ = [
    "base_of",
    "confirm_images",
    "recorded_spec",
    "study_space",
    "task_of",
    "evaluator_of",
    "read_config",
    "evaluate_spec",
]


def confirm_images(spec: StudySpec | None) -> str:
    """What a confirmation that starts for ``spec`` scores its runs on: val and test together
    where its task has a test split, else val (:class:`~spotpatch.search.ConfirmPlan`)."""
    return "val" if spec is None or spec.data.test is None else "val+test"


def base_of(spec: StudySpec) -> Base:
    return load_base(spec.base.model, spec.base.checkpoint, device=spec.base.device)


def recorded_spec(meta: StudyMeta) -> StudySpec:
    """The spec a study ran with: the copy it stored at its last run (its paths relative to the
    study file's folder then, so the file may since have moved or been deleted), or, for
    studies of earlier versions, the study file read again.

    Raises:
        UserError: the spec no longer reads (its data moved), or an earlier version's study
            file is gone.
    """
    path = Path(meta.spec)
    if meta.spec_text is None and not path.is_file():
        raise UserError(f"study file {path} is gone")
    try:
        return spec_from_text(meta.spec_text, path) if meta.spec_text else load_spec(path)
    except UserError as e:
        raise UserError(f"the study's spec no longer reads ({e})") from None


def study_space(base: Base, meta: StudyMeta) -> PatchSpace:
    """The patch space a study searched, rebuilt from its metadata (no task needed)."""
    return base.space(
        len(meta.classes) + 1, kinds=meta.kinds, granularity=meta.granularity, dtype=meta.dtype
    )


def task_of(spec: StudySpec, *, progress: bool | None = None) -> Task:
    """The study's task, decoded at its detector's input size."""
    data = spec.data
    return load_task(
        spec.name,
        train=(data.train, data.train_images),
        val=(data.val, data.val_images),
        test=(data.test, data.test_images) if data.test else None,
        resize=get_detector(spec.base.model).resized,
        progress=progress,
    )


def evaluator_of(
    spec: StudySpec, *, base: Base | None = None, progress: bool | None = None
) -> PatchEvaluator:
    """The evaluator of a study: its base, task, training budget and patch space."""
    # The data first: its problems are the user's most likely ones.
    task = task_of(spec, progress=progress)
    base = base or base_of(spec)
    try:
        return PatchEvaluator(
            task,
            base,
            spec.train,
            kinds=spec.space.kinds,
            granularity=spec.space.granularity,
            dtype=spec.space.dtype,
            seed=spec.seed,
            progress=progress,
        )
    except UserError as e:
        raise UserError(f"{spec.path}: {e}") from None


def read_config(path: str | Path, space: PatchSpace) -> PatchConfig:
    """A config from a JSON file: ``{site: kind}``, or a ``patch.json`` (its ``sites``)."""
    path = Path(path)
    raw = read_json(path, what="config file")
    if isinstance(raw, dict) and isinstance(raw.get("sites"), dict):
        raw = raw["sites"]
    if not isinstance(raw, dict) or not all(isinstance(v, str) for v in raw.values()):
        raise UserError(f"{path}: a config is a JSON object mapping site names to kinds")
    try:
        config = PatchConfig.from_dict(raw)
        space.check_contains(config, any_kind=True)
    except UserError as e:
        raise UserError(f"{path}: {e}") from None
    return config


def evaluate_spec(
    spec_path: str | Path,
    *,
    preset: str | None = None,
    config_file: str | Path | None = None,
    progress: bool | None = None,
) -> tuple[EvalResult, PatchEvaluator]:
    """Train and score one config of a study: a fixed preset or a config file."""
    if (preset is None) == (config_file is None):
        raise UserError("give exactly one of a preset or a config file")
    spec = load_spec(spec_path)
    evaluator = evaluator_of(spec, progress=progress)
    if preset is not None:
        config = evaluator.space.preset(preset)
    else:
        config = read_config(config_file, evaluator.space)
    return evaluator.evaluate(config), evaluator
