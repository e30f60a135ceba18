"""Patch files: ``patch.safetensors`` (only the task's tensors) and ``patch.json`` (what they are).

The safetensors payload of a patch is exactly its ``patch_bytes``: the tensors as stored at
the patch's dtype (int8 weights with their ``.qscale`` scales, see ``_dtypes``), written and read
as they are. ``patch.json`` records the base it applies to by the sha256 of the base's tensors,
so a patch is never applied to another, and the sha256 of ``patch.safetensors`` itself
(``tensors_sha256``), so a tensor file changed after it was written is refused (folders written
before it was recorded are read unchecked).
"""

from __future__ import annotations

import hashlib
import json
import os
import struct
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from spotpatch._errors import UserError
from spotpatch._files import read_json, sha256_of
from spotpatch.spaces._space import PatchConfig

__all__ = ["Patch", "save_patch", "load_patch", "state_sha256", "payload_bytes", "FORMAT_VERSION"]

FORMAT_VERSION = 1
TENSORS_FILE = "patch.safetensors"
META_FILE = "patch.json"


def state_sha256(state: Mapping[str, Tensor]) -> str:
    """sha256 over a model's tensors: names, dtypes, shapes and values, in sorted name order.

    ``num_batches_tracked`` counters are left out: they never change what a model computes.
    """
    digest = hashlib.sha256()
    for name in sorted(state):
        if name.endswith("num_batches_tracked"):
            continue
        t = state[name].detach().to("cpu").contiguous()
        digest.update(f"{name}|{t.dtype}|{tuple(t.shape)}|".encode())
        digest.update(t.view(torch.uint8).numpy().tobytes() if t.numel() else b"")
    return digest.hexdigest()


def payload_bytes(path: str | Path) -> int:
    """Bytes of tensor data in a safetensors file (the file minus its header)."""
    with open(path, "rb") as f:
        (header_len,) = struct.unpack("<Q", f.read(8))
    return os.path.getsize(path) - 8 - header_len


@dataclass(frozen=True)
class Patch:
    """One task's patch for one base, as stored.

    Example:
        >>> patch = load_patch("exports/pets")  # doctest: +SKIP
        >>> patch.config.summary(), patch.payload_bytes  # doctest: +SKIP
    """

    config: PatchConfig
    tensors: Mapping[str, Tensor]
    model: str
    base_sha256: str
    task: str
    classes: tuple[str, ...]
    dtype: str = "float32"
    metrics: Mapping[str, float] = field(default_factory=dict)
    study: Mapping[str, Any] = field(default_factory=dict)
    #: The task's COCO category ids, in ``classes`` order, when known (predictions use them).
    category_ids: tuple[int, ...] | None = None
    #: The sha256 of ``patch.safetensors`` as :func:`save_patch` wrote it (None: not written).
    tensors_sha256: str | None = None
    #: The study's confirmation of this patch (fresh paired seeds against the full fine-tune:
    #: ``seeds``, ``map_mean``, ``map_sd``, ``full_map_mean``, ``full_map_sd``, ``delta``,
    #: ``delta_sd``, ``holds``...); None when it was not confirmed.
    confirmation: Mapping[str, Any] | None = None

    @property
    def payload_bytes(self) -> int:
        return sum(t.numel() * t.element_size() for t in self.tensors.values())

    def meta(self) -> dict[str, Any]:
        """The content of ``patch.json``."""
        task: dict[str, Any] = {"name": self.task, "classes": list(self.classes)}
        if self.category_ids is not None:
            task["category_ids"] = list(self.category_ids)
        meta = {
            "format_version": FORMAT_VERSION,
            "base": {"model": self.model, "sha256": self.base_sha256},
            "task": task,
            "dtype": self.dtype,
            "sites": self.config.to_dict(),
            "metrics": dict(self.metrics),
            "study": dict(self.study),
            "confirmation": None if self.confirmation is None else dict(self.confirmation),
        }
        if self.tensors_sha256 is not None:
            meta["tensors_sha256"] = self.tensors_sha256
        return meta


def save_patch(patch: Patch, out: str | Path) -> Path:
    """Write ``patch.safetensors`` and ``patch.json`` into ``out`` (created if missing).

    Each file is written under a temporary name and renamed into place, the JSON last, so a
    crash never leaves a JSON that describes tensors which are not there. The JSON records the
    sha256 of the tensor file as written (``tensors_sha256``).
    """
    from safetensors.torch import save

    out = Path(out)
    if out.exists() and not out.is_dir():
        raise UserError(f"{out} exists and is not a folder")
    out.mkdir(parents=True, exist_ok=True)
    tensors = {n: t.detach().to("cpu").contiguous() for n, t in patch.tensors.items()}
    tmp_tensors = out / f".{TENSORS_FILE}.tmp"
    tmp_meta = out / f".{META_FILE}.tmp"
    try:
        data = save(tensors, metadata={"format": "pt", "spotpatch": "patch"})
        tmp_tensors.write_bytes(data)
        meta = replace(patch, tensors_sha256=sha256_of(data)).meta()
        tmp_meta.write_text(json.dumps(meta, indent=2) + "\n")
        os.replace(tmp_tensors, out / TENSORS_FILE)
        os.replace(tmp_meta, out / META_FILE)
    finally:
        tmp_tensors.unlink(missing_ok=True)
        tmp_meta.unlink(missing_ok=True)
    return out


def load_patch(path: str | Path) -> Patch:
    """Read a patch folder written by :func:`save_patch`.

    When ``patch.json`` records the sha256 of ``patch.safetensors`` (``tensors_sha256``), the
    file's bytes must have it.

    Raises:
        UserError: a missing or malformed file, or a tensor file that is not the one written.
    """
    from safetensors import SafetensorError
    from safetensors.torch import load

    path = Path(path)
    meta_path, tensors_path = path / META_FILE, path / TENSORS_FILE
    if not meta_path.is_file():
        raise UserError(f"not a patch folder: {meta_path} not found")
    meta = read_json(meta_path, what="patch file")
    try:
        if meta["format_version"] != FORMAT_VERSION:
            raise UserError(
                f"{meta_path}: format_version {meta['format_version']} is not supported "
                f"(this spotpatch reads {FORMAT_VERSION})"
            )
        config = PatchConfig.from_dict(meta["sites"])
        info = dict(
            model=str(meta["base"]["model"]),
            base_sha256=str(meta["base"]["sha256"]),
            task=str(meta["task"]["name"]),
            classes=tuple(str(c) for c in meta["task"]["classes"]),
            dtype=str(meta.get("dtype", "float32")),
            metrics=dict(meta.get("metrics", {})),
            study=dict(meta.get("study", {})),
            confirmation=dict(meta["confirmation"]) if meta.get("confirmation") else None,
        )
        ids = meta["task"].get("category_ids")
        expected = meta.get("tensors_sha256")
    except (KeyError, TypeError, AttributeError) as e:
        raise UserError(f"{meta_path}: missing or malformed field {e}") from None
    if ids is not None:
        if (
            not isinstance(ids, list)
            or len(ids) != len(info["classes"])
            or not all(isinstance(i, int) and not isinstance(i, bool) for i in ids)
        ):
            raise UserError(f"{meta_path}: task.category_ids must be one integer per class")
        info["category_ids"] = tuple(ids)
    if expected is not None and not isinstance(expected, str):
        raise UserError(f"{meta_path}: tensors_sha256 must be a string, got {expected!r}")
    whose = _whose(info["study"])
    if not tensors_path.is_file():
        raise UserError(f"not a patch folder: {tensors_path} not found{whose}")
    try:
        data = tensors_path.read_bytes()
    except OSError as e:
        raise UserError(f"{tensors_path} cannot be read ({e.strerror or e})") from None
    if expected is not None and (actual := sha256_of(data)) != expected:
        raise UserError(
            f"{tensors_path} changed after it was written{whose}: sha256 {actual[:12]}, "
            f"{META_FILE} records {expected[:12]}"
        )
    try:
        tensors = load(data)
    except SafetensorError as e:
        raise UserError(f"{tensors_path}: not a readable safetensors file ({e})") from None
    return Patch(config=config, tensors=tensors, tensors_sha256=expected, **info)


def _whose(study: Mapping[str, Any]) -> str:
    """`` (trial 3 of study 'pets')`` for a patch that records where it comes from."""
    if "trial" in study and "name" in study:
        return f" (trial {study['trial']} of study {study['name']!r})"
    return ""
