"""Exporting a study's answer: the trial's stored tensors as a patch folder, never retrained.

``export_patch`` takes the study's answer (or the trial an explicit rule picks: both from
:func:`spotpatch.search.study_answer`), reads the patch tensors its trial stored as an Optuna
artifact (:func:`trial_patch`), and writes ``DIR/patch.safetensors`` and ``DIR/patch.json``
(the format of :func:`spotpatch.spaces.save_patch`), with the study's confirmation of that patch
where it has one (``confirmation``: its paired Δ on fresh seeds). When the study's spec still
exists and has a test split, the patch is applied to the base and scored there
(``metrics.test_map``). Optionally the patched detector goes to ONNX as well
(:func:`spotpatch.studies.export_onnx`).
"""

from __future__ import annotations

import json
import logging
import os
from dataclasses import replace
from pathlib import Path
from typing import Any

from spotpatch._errors import UserError
from spotpatch._files import check_replaceable, replace_folder, staging_folder
from spotpatch.evaluators import Base, coco_map, load_base, load_split
from spotpatch.search import Answer, StudyMeta, TrialRecord, study_answer, study_meta
from spotpatch.spaces import Patch, payload_bytes, save_patch
from spotpatch.studies._artifacts import read_artifact
from spotpatch.studies._onnx import export_onnx
from spotpatch.studies._select import selected_trial
from spotpatch.studies._setup import recorded_spec, study_space
from spotpatch.studies._spec import StudySpec
from spotpatch.studies._storage import DEFAULT_STORAGE, load_study, open_storage

__all__ = ["export_patch", "answer_patch", "trial_patch", "study_base"]

log = logging.getLogger("spotpatch")
_PATCH_FILES = frozenset({"patch.json", "patch.safetensors"})


def export_patch(
    study_name: str,
    out_dir: str | Path,
    *,
    rule: str | None = None,
    storage: str = DEFAULT_STORAGE,
    onnx: str | Path | None = None,
    device: str | None = None,
    progress: bool | None = None,
) -> dict[str, Any]:
    """Write the patch of study ``study_name``'s answer (or of the trial ``rule`` picks);
    nothing trains.

    ``out_dir`` may be missing, an empty folder, or a previous spotpatch export (a folder of
    only ``patch.json``, ``patch.safetensors`` and ``*.onnx`` files, with a spotpatch
    ``patch.json``), which is replaced as a whole; any other existing path is refused. Every file
    is made in a temporary folder beside ``out_dir`` and renamed into place at the end, so an
    error leaves nothing half-written.

    ``metrics.test_map`` is added when the spec the study recorded still exists and has a test
    split: the stored patch is applied to the base and scored there. When the spec, its test
    split or the base cannot be read, the export goes on without it and a warning says why.
    ``task.category_ids`` (the COCO ids, for ``predict``) are those the study recorded at
    creation (studies made before it recorded them: the spec's train file, when it still reads).

    Args:
        study_name: the study (one per task).
        out_dir: the patch folder to write.
        rule: None for the study's answer, else ``knee``, ``min-map=X``, ``max-bytes=B``,
            ``within=D`` or ``within-full=D`` (see :func:`spotpatch.search.select_point`).
        storage: the study's Optuna storage URL.
        onnx: also write the patched detector to this ONNX file (raw head outputs, no NMS;
            SSD-style detectors only).
        device: where the base runs to score the test split and export ONNX (default: the
            spec's ``[base] device``, else ``auto``).
        progress: progress bars while scoring (None: only on a terminal).

    Returns:
        The content of ``patch.json`` (with ``tensors_sha256``, the sha256 of
        ``patch.safetensors``, which ``predict`` checks; ``confirmation`` None when the study
        did not confirm this patch, which a warning says).

    Raises:
        UserError: an unknown or empty study, a bad or unsatisfiable rule, a missing artifact,
            an ``out_dir`` that is not safe to replace, a stored patch whose size differs from
            its trial's ``patch_bytes``.

    Example:
        >>> export_patch("pets", "exports/pets", rule="knee")["metrics"]  # doctest: +SKIP
        {'map': 0.61, 'map50': 0.88, 'patch_bytes': 48212, 'test_map': 0.6}
    """
    out = Path(out_dir)
    check_replaceable(out, ours=_is_previous_export, kind="export")
    onnx_path = Path(onnx) if onnx is not None else None
    if onnx_path is not None:
        _check_onnx(onnx_path, out)
    study = load_study(study_name, open_storage(storage, existing=True))
    meta = study_meta(study)
    patch, record, spec = answer_patch(study, storage, rule)
    if patch.confirmation is None:
        log.warning(
            "study %r: this patch was not confirmed on fresh seeds (patch.json's confirmation "
            "is null): `spotpatch confirm %s` measures it",
            study_name,
            study_name,
        )
    with staging_folder(out) as tmp:
        wants_test = spec is not None and spec.data.test is not None
        base = None
        if wants_test or onnx_path is not None:
            if device is None:
                device = spec.base.device if spec is not None else "auto"
            base = study_base(meta, device, required=onnx_path is not None)
        if base is not None and wants_test:
            test_map = _test_map(patch, meta, base, spec, progress)
            if test_map is not None:
                patch = replace(patch, metrics={**patch.metrics, "test_map": test_map})
        stage = tmp / "patch"
        save_patch(patch, stage)
        info = json.loads((stage / "patch.json").read_text(encoding="utf-8"))
        stored = payload_bytes(stage / "patch.safetensors")
        if stored != record.patch_bytes:
            raise UserError(
                f"trial {record.number}'s stored patch holds {stored:,} bytes of tensors, not its "
                f"patch_bytes {record.patch_bytes:,}: the artifact does not match its trial"
            )
        staged_onnx = None
        try:
            if onnx_path is not None:
                model = base.apply_stored(patch, study_space(base, meta)).model
                size = base.detector.image_size
                if onnx_path.resolve().parent == out.resolve():
                    export_onnx(model, size, stage / onnx_path.name)  # moves with the folder
                else:
                    # Staged beside its target, so that the last step is a plain rename.
                    staged_onnx = onnx_path.with_name(f".{onnx_path.name}.{os.getpid()}.staged")
                    try:
                        onnx_path.parent.mkdir(parents=True, exist_ok=True)
                        staged_onnx.touch()
                    except OSError as e:
                        raise UserError(
                            f"cannot write --onnx {onnx_path}: {e.strerror or e}"
                        ) from None
                    export_onnx(model, size, staged_onnx)
            _commit(stage, out, tmp / "previous")
            if staged_onnx is not None:
                os.replace(staged_onnx, onnx_path)
        finally:
            if staged_onnx is not None:
                staged_onnx.unlink(missing_ok=True)
    return info


# -- steps --------------------------------------------------------------------------------------
def confirmation_json(answer: Answer) -> dict[str, Any] | None:
    """``patch.json``'s ``confirmation`` for an answer: its paired Δ on fresh seeds against the
    full fine-tune, or None while it has none (mAP and Δ in [0, 1])."""
    c = answer.confirmation
    if c is None or c.reported is None:
        return None
    return {
        **c.reported.to_json(),
        "holds": c.holds,
        "tolerance": c.tolerance,
        "walked": [s.trial for s in c.walk],
        "walked_out": c.walked_out,
        "images": c.plan.images,
    }


def _check_onnx(path: Path, out: Path) -> None:
    if path.is_dir():
        raise UserError(f"--onnx {path} is a folder; give a file such as model.onnx")
    inside = path.resolve().is_relative_to(out.resolve())
    if inside and path.resolve().parent != out.resolve():
        raise UserError(f"--onnx {path}: put the ONNX file directly in {out} or outside it")


def _is_previous_export(folder: Path) -> bool:
    entries = list(folder.iterdir())
    if not all(e.is_file() and (e.name in _PATCH_FILES or e.suffix == ".onnx") for e in entries):
        return False
    try:
        meta = json.loads((folder / "patch.json").read_text())
    except (OSError, ValueError):
        return False
    return isinstance(meta, dict) and "format_version" in meta and "base" in meta


def answer_patch(
    study, storage=DEFAULT_STORAGE, rule: str | None = None
) -> tuple[Patch, TrialRecord, StudySpec | None]:
    """The patch of a study's answer (or of the trial ``rule`` picks) as ``export`` and
    ``bundle`` write it: the trial's stored tensors, where they come from, the answer's
    confirmation and the task's COCO category ids; with the trial and the study's recorded
    spec (None, with a warning, when it cannot be read).

    Raises:
        UserError: no answer (or nothing the rule can take), a missing or changed artifact.
    """
    meta = study_meta(study)
    answer = study_answer(study, rule)
    record = selected_trial(study, rule)
    patch = trial_patch(study, record, storage)
    where = {**patch.study, "rule": answer.rule, "runs": answer.runs, "map_mean": answer.map}
    patch = replace(patch, study=where, confirmation=confirmation_json(answer))
    spec = _recorded_spec(meta)
    ids = meta.category_ids
    if ids is None and spec is not None:
        ids = _category_ids(spec, meta.classes)
    if ids is not None:
        patch = replace(patch, category_ids=ids)
    return patch, record, spec


def trial_patch(study, record: TrialRecord, storage=DEFAULT_STORAGE) -> Patch:
    """The patch a trial of a study stored (its tensors as stored, at the study's dtype), with
    its metrics and where it comes from; what ``export`` writes, before the test split.

    Raises:
        UserError: the trial's artifact is missing, is not the file the trial stored (its
            sha256 differs from the recorded one), or is not a safetensors file.

    Example:
        >>> study = load_study("pets", open_storage("sqlite:///spotpatch.db"))  # doctest: +SKIP
        >>> trial_patch(study, selected_trial(study)).payload_bytes  # doctest: +SKIP
    """
    from safetensors import SafetensorError
    from safetensors.torch import load

    meta = study_meta(study)
    data = read_artifact(study.study_name, meta, record, storage)
    try:
        tensors = load(data)
    except SafetensorError as e:
        raise UserError(
            f"artifact {record.artifact_id} of trial {record.number} of study "
            f"{study.study_name!r} is not a safetensors file ({e})"
        ) from None
    return Patch(
        config=record.config,
        tensors=tensors,
        model=meta.model,
        base_sha256=meta.base_sha256,
        task=meta.task,
        classes=meta.classes,
        dtype=meta.dtype,
        metrics={"map": record.map, "map50": record.map50, "patch_bytes": record.patch_bytes},
        study={"name": study.study_name, "trial": record.number},
    )


def _recorded_spec(meta: StudyMeta) -> StudySpec | None:
    try:
        return recorded_spec(meta)
    except UserError as e:
        log.warning("%s: exporting without test mAP", e)
        return None


def _category_ids(spec: StudySpec, classes: tuple[str, ...]) -> tuple[int, ...] | None:
    """The COCO category ids of the task, in class order, from the spec's train annotations
    (for studies that recorded class names only); kept only when the names still match.
    """
    try:
        data = json.loads(spec.data.train.read_text(encoding="utf-8"))
        cats = sorted((int(c["id"]), str(c["name"])) for c in data["categories"])
    except (OSError, ValueError, KeyError, TypeError):
        return None
    if tuple(name for _, name in cats) != classes:
        return None
    return tuple(cid for cid, _ in cats)


def study_base(meta: StudyMeta, device: str, *, required: bool) -> Base | None:
    """The study's base; None (with a warning) when it cannot be had and is not ``required``."""
    try:
        base = load_base(meta.model, meta.checkpoint, device=device)
        if base.sha256 != meta.base_sha256:
            raise UserError(
                f"the base at {base.source} is not the study's base "
                f"(sha256 {base.sha256[:12]}, the study's is {meta.base_sha256[:12]})"
            )
    except UserError as e:
        if required:
            raise
        log.warning("%s: exporting without test mAP", e)
        return None
    return base


def _test_map(
    patch: Patch, meta: StudyMeta, base: Base, spec: StudySpec, progress: bool | None
) -> float | None:
    """COCO mAP of the stored patch on the spec's test split."""
    try:
        split, cats = load_split(
            spec.data.test, spec.data.test_images, resize=base.detector.resized, progress=progress
        )
    except UserError as e:
        log.warning("test split unreadable (%s): exporting without test mAP", e)
        return None
    if tuple(cats.values()) != meta.classes:
        log.warning("test split classes differ from the study's: exporting without test mAP")
        return None
    applied = base.apply_stored(patch, study_space(base, meta))
    value, _ = coco_map(applied.model, split, tuple(cats), progress=progress)
    return value


def _commit(stage: Path, out: Path, aside: Path) -> None:
    """Put the staged folder at ``out``, replacing an empty folder or a previous export."""
    replace_folder(stage, out, aside=aside)
