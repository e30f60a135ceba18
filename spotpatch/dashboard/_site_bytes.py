"""Bytes per site of a stored patch, read from its safetensors header (no tensor is loaded).

Tensor names carry module paths: a site's own tensors sit under the site (``site.weight``,
``site.lora_A``), its norm layer's under the norm's path, which is the module registered right
after the site in the same parent (how ``spaces`` finds a site's norm). An int8 weight's scales
(``<weight>.qscale``) count with the weight.
"""

from __future__ import annotations

import io
import json
import re
import struct
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from spotpatch._errors import UserError
from spotpatch.search import TrialRecord, study_meta, trial_records
from spotpatch.spaces import SCALE_SUFFIX
from spotpatch.studies import read_artifact

__all__ = ["HEAD", "SiteBytes", "attribute_tensors", "module_order", "site_bytes"]

HEAD = "class head"


@dataclass(frozen=True)
class SiteBytes:
    """Bytes per site of one trial's patch, read from its stored tensors.

    ``bytes`` sums to ``patch_bytes`` whenever the artifact was found (``note`` is None).
    A norm layer counts toward the layer registered right before it (the site it belongs to).
    """

    study: str
    trial: int | None
    labels: tuple[str, ...]
    kinds: tuple[str, ...]
    bytes: tuple[int, ...]
    patch_bytes: int | None
    note: str | None

    @property
    def total(self) -> int:
        return sum(self.bytes)


def module_order(name: str) -> tuple:
    """A sort key for module paths: numeric parts as numbers (``f.2`` before ``f.10``)."""
    return tuple((0, int(p), "") if p.isdigit() else (1, 0, p) for p in re.split(r"\.", name))


def _read_safetensors_sizes(reader: BinaryIO) -> dict[str, int]:
    """Tensor name -> payload bytes, from a safetensors header (no tensor is read)."""
    (length,) = struct.unpack("<Q", reader.read(8))
    if length > 100_000_000:
        raise ValueError("header too large")
    header = json.loads(reader.read(length))
    return {
        name: int(info["data_offsets"][1]) - int(info["data_offsets"][0])
        for name, info in header.items()
        if name != "__metadata__"
    }


def attribute_tensors(sizes: dict[str, int], sites: Iterable[str]) -> dict[str, int]:
    """Bytes per site from tensor bytes by name.

    A tensor belongs to the site whose module holds it (``site.weight``, ``site.lora_A``); a
    norm layer's tensors to the site registered right before it in the same parent (how sites
    find their norm); anything else is the class head. A norm with no such site keeps its own
    module path. An int8 weight's scales count with the weight they scale.
    """
    sites = set(sites)
    owned: dict[str, int] = {}
    for name, size in sizes.items():
        scaled = name.removesuffix(SCALE_SUFFIX)
        key = scaled if scaled != name and scaled in sizes else name
        owned[key] = owned.get(key, 0) + size
    sizes = owned
    modules: dict[str, set[str]] = {}
    for name in sizes:
        module, _, leaf = name.rpartition(".")
        modules.setdefault(module, set()).add(leaf)
    out: dict[str, int] = {}
    for name, size in sizes.items():
        module = name.rpartition(".")[0]
        if module in sites:
            label = module
        elif {"running_mean", "running_var"} & modules.get(module, set()):
            label = _norm_owner(module, sites)
        else:
            label = HEAD
        out[label] = out.get(label, 0) + size
    return out


def _norm_owner(norm: str, sites: set[str]) -> str:
    parent, _, last = norm.rpartition(".")
    if last.isdigit() and f"{parent}.{int(last) - 1}" in sites:
        return f"{parent}.{int(last) - 1}"
    before = [
        s for s in sites if s.rpartition(".")[0] == parent and module_order(s) < module_order(norm)
    ]
    return max(before, key=module_order) if before else f"{norm} (norm)"


def site_bytes(
    study,
    trial_number: int | None,
    *,
    records: list[TrialRecord] | None = None,
    storage=None,
) -> SiteBytes:
    """Bytes per site of one trial's patch (its stored tensors), largest first after the head.

    The tensors are found as export finds them (:func:`spotpatch.studies.read_artifact`; give
    ``storage`` to look beside it too) and checked as export checks them. Without them the
    record is empty and ``note`` says why: the trial stored none, the study's artifact folder is
    not on this host, or the trial was stored before its file's sha256 was recorded.

    Raises:
        UserError: the artifact folder is here but the trial's file is missing from it, or the
            file is not the one the trial stored (its sha256 differs from the recorded one).
    """
    meta = study_meta(study)

    def empty(note: str, patch_bytes: int | None = None) -> SiteBytes:
        return SiteBytes(study.study_name, trial_number, (), (), (), patch_bytes, note)

    if trial_number is None:
        return empty("no selected trial")
    records = trial_records(study) if records is None else records
    record = next(r for r in records if r.number == trial_number)
    try:
        data = read_artifact(study.study_name, meta, record, storage)
    except UserError as e:
        # Trials stored before the sha256 was recorded read as they did; a page drawn where
        # the study's artifact folder is not mounted (a shared storage viewed elsewhere) says so.
        folder_here = not meta.artifacts or Path(meta.artifacts).is_dir()
        if record.artifact_sha256 is not None and folder_here:
            raise
        return empty(str(e), record.patch_bytes)
    try:
        sizes = _read_safetensors_sizes(io.BytesIO(data))
    except (OSError, ValueError, KeyError, TypeError, struct.error) as e:
        return empty(
            f"cannot read the patch tensors of trial {trial_number}: {e}", record.patch_bytes
        )
    config = record.sites or {}
    per_site = attribute_tensors(sizes, config)
    head = per_site.pop(HEAD, 0)
    order = sorted(per_site, key=lambda s: (-per_site[s], module_order(s)))
    labels = ([HEAD] if head else []) + order
    kinds = ([""] if head else []) + [str(config.get(s, "norm")) for s in order]
    return SiteBytes(
        study=study.study_name,
        trial=trial_number,
        labels=tuple(labels),
        kinds=tuple(kinds),
        bytes=tuple([head] if head else []) + tuple(per_site[s] for s in order),
        patch_bytes=record.patch_bytes,
        note=None,
    )
