"""A fleet for a device: the base once, one small file per task, and ``manifest.json``.

``write_bundle`` takes each study's answer (the trial ``export`` writes, never retrained) and
writes::

    DIR/base.onnx            the base's graph up to its raw head outputs (no weights in it)
    DIR/base.safetensors     the base's weights, which base.onnx reads as ONNX external data
    DIR/tasks/NAME.safetensors   per study, its answer's patch tensors as stored
    DIR/manifest.json        tasks, classes, category ids, bytes and sha256 of every file

How the base is shared: the graph's class head is an input (its shape follows each task's
classes) and every other tensor an initializer named by its state-dict name, so a task's file
holds exactly its patch's tensors; :mod:`spotpatch.runtime` replaces the initializers the patch
changes when it makes the task's session (a low-rank delta added to its base weight first) and
feeds the class head with each batch. See ``docs/patches.md``.
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

from spotpatch._errors import UserError
from spotpatch._files import check_replaceable, replace_folder, sha256_of, staging_folder
from spotpatch.evaluators import Base
from spotpatch.runtime import BUNDLE_FORMAT, BUNDLE_VERSION, MANIFEST
from spotpatch.search import study_meta
from spotpatch.spaces import (
    Patch,
    check_dtype,
    norm_eps,
    payload_bytes,
)
from spotpatch.studies._base_graph import GRAPH_FILE, WEIGHTS_FILE, export_base_graph
from spotpatch.studies._export import answer_patch, study_base
from spotpatch.studies._onnx import ONNX_OPSET
from spotpatch.studies._select import each_study
from spotpatch.studies._setup import study_space
from spotpatch.studies._storage import DEFAULT_STORAGE, open_storage

__all__ = ["write_bundle"]

TASKS = "tasks"


def write_bundle(
    out: str | Path,
    *,
    storage: str = DEFAULT_STORAGE,
    studies: Sequence[str] | None = None,
    dtype: str | None = None,
) -> dict[str, Any]:
    """Write the bundle of the studies' answers into ``out``; returns the manifest.

    ``out`` may be missing, an empty folder or an earlier bundle (replaced as a whole); the
    bundle is built beside it and renamed into place, so an error leaves nothing half-written.

    Args:
        out: the bundle folder.
        storage: the studies' Optuna storage URL.
        studies: these studies only, in this order (default: every study of the storage).
        dtype: store every task's tensors at this dtype (``float32``, ``float16`` or ``int8``);
            default: each study's own.

    Raises:
        UserError: a study without an answer, studies of different bases, a detector that is
            not SSD-style, an ``out`` that is not safe to replace or cannot be written.
    """
    out = Path(out)
    if dtype is not None:
        check_dtype(dtype)
    if studies and len(set(studies)) < len(studies):
        twice = next(n for n in studies if list(studies).count(n) > 1)
        raise UserError(f"--studies names {twice!r} twice")
    check_replaceable(out, ours=_is_bundle, kind="bundle")
    base: Base | None = None
    patches: list[tuple[str, Patch]] = []
    for study in each_study(open_storage(storage, existing=True), studies or None):
        meta = study_meta(study)
        if base is None:
            base = study_base(meta, "cpu", required=True)
            if base.detector.keep_aspect:
                raise UserError(f"bundles hold SSD-style detectors only, not {base.name}")
        elif (meta.model, meta.base_sha256) != (base.name, base.sha256):
            raise UserError(
                f"study {study.study_name!r} patches another base ({meta.model} "
                f"{meta.base_sha256[:12]}) than the studies before it ({base.name} "
                f"{base.sha256[:12]}): a bundle has one base"
            )
        patch, _, _ = answer_patch(study, storage)
        if dtype is not None and dtype != patch.dtype:
            # Re-stored as a trial stores it: applied to the base, then read out at ``dtype``.
            tensors = base.apply_stored(patch, study_space(base, meta)).state(dtype)
            patch = replace(patch, tensors=tensors, dtype=dtype)
        patches.append((study.study_name, patch))
    with staging_folder(out) as tmp:
        stage = tmp / "bundle"
        (stage / TASKS).mkdir(parents=True)
        graph = export_base_graph(base.model, base.detector.image_size, _head_names(base), stage)
        manifest = {
            "format": BUNDLE_FORMAT,
            "format_version": BUNDLE_VERSION,
            "opset": ONNX_OPSET,
            "base": {
                "model": base.name,
                "sha256": base.sha256,
                "files": [GRAPH_FILE, WEIGHTS_FILE],
                "graph": _file_entry(stage, GRAPH_FILE),
                "weights": _file_entry(stage, WEIGHTS_FILE),
                "inputs": graph["inputs"],
                "outputs": graph["outputs"],
                "image_size": list(base.detector.image_size),
                "norm_eps": norm_eps(base.model),
            },
            "postprocess": _postprocess(base),
            "tasks": {},
        }
        used: set[str] = set()
        for name, patch in patches:
            manifest["tasks"][name] = _write_task(stage, name, patch, used)
        (stage / MANIFEST).write_text(json.dumps(manifest, indent=2) + "\n", encoding="utf-8")
        replace_folder(stage, out, aside=tmp / "previous")
    return manifest


def _head_names(base: Base) -> list[str]:
    return [h.name for h in base.head(base.num_classes)]


def _postprocess(base: Base) -> dict[str, Any]:
    """What torchvision's SSD does after its network, with this base's settings."""
    model = base.model
    coder = model.box_coder
    return {
        "score_thresh": float(model.score_thresh),
        "nms_thresh": float(model.nms_thresh),
        "detections_per_img": int(model.detections_per_img),
        "topk_candidates": int(model.topk_candidates),
        "box_weights": [float(w) for w in coder.weights],
        "box_clip": float(coder.bbox_xform_clip),
    }


def _file_entry(folder: Path, name: str) -> dict[str, Any]:
    path = folder / name
    return {"file": name, "bytes": path.stat().st_size, "sha256": sha256_of(path)}


def _write_task(stage: Path, name: str, patch: Patch, used: set[str]) -> dict[str, Any]:
    from safetensors.torch import save

    slug = re.sub(r"[^A-Za-z0-9._-]", "_", name).lstrip(".") or "task"
    file, n = f"{TASKS}/{slug}.safetensors", 1
    while file.lower() in used:
        n += 1
        file = f"{TASKS}/{slug}-{n}.safetensors"
    used.add(file.lower())
    tensors = {k: v.detach().to("cpu").contiguous() for k, v in patch.tensors.items()}
    (stage / file).write_bytes(save(tensors, metadata={"spotpatch": "task", "task": name}))
    if patch.category_ids is None:
        ids = list(range(1, len(patch.classes) + 1))
    else:
        ids = list(patch.category_ids)
    confirmation = patch.confirmation
    return {
        "files": [file],
        **_file_entry(stage, file),
        "payload_bytes": payload_bytes(stage / file),
        "base_sha256": patch.base_sha256,
        "classes": list(patch.classes),
        "category_ids": ids,
        "dtype": patch.dtype,
        "sites": patch.config.to_dict(),
        "study": patch.study.get("name", name),
        "trial": patch.study.get("trial"),
        "map": patch.metrics.get("map"),
        "confirmation": None if confirmation is None else dict(confirmation),
    }


def _is_bundle(folder: Path) -> bool:
    try:
        manifest = json.loads((folder / MANIFEST).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    return isinstance(manifest, dict) and manifest.get("format") == BUNDLE_FORMAT
