"""Bytes per site of a stored patch, read from its safetensors header (no tensor is loaded).

Tensor names carry module paths: a site's own tensors sit under the site (``site.weight``,
``site.lora_A``), its norm layer's under the norm's path, which is the module registered right
after the site in the same parent (how ``spaces`` finds a site's norm).
"""

from __future__ import annotations

import json
import re
import struct
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from spotpatch.studies import StudyMeta, study_meta

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


def _read_safetensors_sizes(path: Path) -> dict[str, int]:
    """Tensor name -> payload bytes, from a safetensors header (no tensor is read)."""
    with open(path, "rb") as f:
        (length,) = struct.unpack("<Q", f.read(8))
        if length > 100_000_000:
            raise ValueError("header too large")
        header = json.loads(f.read(length))
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
    module path.
    """
    sites = set(sites)
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


def _artifact_path(meta: StudyMeta, artifact_id: str) -> Path:
    return Path(meta.artifacts) / artifact_id


def site_bytes(study, trial_number: int | None, *, trials=None) -> SiteBytes:
    """Bytes per site of one trial's patch (its stored tensors), largest first after the head.

    Without the trial's artifact (not uploaded, or its folder is elsewhere) the record is empty
    and ``note`` says why.
    """
    meta = study_meta(study)

    def empty(note: str, patch_bytes: int | None = None) -> SiteBytes:
        return SiteBytes(study.study_name, trial_number, (), (), (), patch_bytes, note)

    if trial_number is None:
        return empty("no selected trial")
    trials = study.get_trials(deepcopy=False) if trials is None else trials
    trial = next(t for t in trials if t.number == trial_number)
    patch_bytes = int(trial.values[1]) if trial.values else None
    artifact_id = trial.user_attrs.get("artifact_id")
    if not artifact_id:
        return empty("this trial stored no patch tensors", patch_bytes)
    path = _artifact_path(meta, str(artifact_id))
    try:
        sizes = _read_safetensors_sizes(path)
    except FileNotFoundError:
        return empty(f"patch tensors not found at {path}", patch_bytes)
    except (OSError, ValueError, KeyError, TypeError, struct.error) as e:
        return empty(f"cannot read the patch tensors at {path}: {e}", patch_bytes)
    config = trial.user_attrs.get("config") or {}
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
        patch_bytes=patch_bytes,
        note=None,
    )
