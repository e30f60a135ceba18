"""Synthetic spotpatch studies, made in seconds without training: for tests and benchmarks.

A study here is written through the same record writer as a real one
(:mod:`spotpatch.search`'s ``completed_trial``, ``write_relaxation``, ``write_study_meta``):
metadata, trial records, patch artifacts (safetensors files of zeros with the real tensor names
and shapes of a small made-up detector) and, when warm-started, the relaxation record; mAP is a
noisy rising function of bytes.
"""

from __future__ import annotations

import math
import random
from io import BytesIO
from pathlib import Path

from spotpatch._files import sha256_of
from spotpatch.evaluators import EvalResult
from spotpatch.search import (
    RelaxationPhase,
    RelaxationResult,
    StudyMeta,
    write_relaxation,
)
from spotpatch.spaces import HeadTensor, PatchConfig, PatchSite, PatchSpace
from spotpatch.studies import artifact_store, create_or_load_study
from spotpatch.testing._records import completed_trial, failed_trial

__all__ = [
    "SYNTHETIC_SITES",
    "synthetic_meta",
    "synthetic_space",
    "synthetic_study",
    "synthetic_site_bytes",
    "synthetic_tensors",
]

#: (site, depthwise, channels): a made-up stack of conv layers, each followed by its norm.
SYNTHETIC_SITES = tuple(
    (f"backbone.features.{i}.{j * 2}", j == 1, 8 * (1 + i // 2)) for i in range(6) for j in (0, 1)
)
_HEAD = {"head.classifier.weight": (3 * 16, 16, 3, 3), "head.classifier.bias": (3 * 16,)}
_KINDS = ("shared", "bn", "dw", "lora4", "full")


def _norm(site: str) -> str:
    parent, _, last = site.rpartition(".")
    return f"{parent}.{int(last) + 1}"


def _site_tensors(site: str, depthwise: bool, channels: int, kind: str) -> dict[str, tuple]:
    if kind == "shared":
        return {}
    tensors: dict[str, tuple] = {}
    fan_in = 1 if depthwise else channels
    if kind == "full" or (kind == "dw" and depthwise):
        tensors[f"{site}.weight"] = (channels, fan_in, 3, 3)
    elif kind == "lora4":
        tensors[f"{site}.lora_A"] = (4, fan_in * 9)
        tensors[f"{site}.lora_B"] = (channels, 4)
    norm = _norm(site)
    tensors.update(
        {f"{norm}.{t}": (channels,) for t in ("weight", "bias", "running_mean", "running_var")}
    )
    return tensors


def _patch_tensors(config: dict[str, str]) -> dict[str, tuple]:
    tensors = dict(_HEAD)
    for site, depthwise, channels in SYNTHETIC_SITES:
        tensors.update(_site_tensors(site, depthwise, channels, config.get(site, "shared")))
    return tensors


def _bytes(tensors: dict[str, tuple]) -> int:
    return sum(math.prod(s) for s in tensors.values()) * 4


def synthetic_tensors(config: PatchConfig):
    """The patch tensors a config of :func:`synthetic_space` stores, as zeros (torch): their
    payload is the space's ``patch_bytes`` of the config."""
    import torch

    return {k: torch.zeros(s) for k, s in _patch_tensors(config.to_dict()).items()}


def synthetic_site_bytes(config: dict[str, str]) -> dict[str, int]:
    """The bytes each site of ``config`` stores (weights and its norm), plus ``class head``."""
    out = {"class head": _bytes(_HEAD)}
    for site, depthwise, channels in SYNTHETIC_SITES:
        kind = config.get(site, "shared")
        if kind != "shared":
            out[site] = _bytes(_site_tensors(site, depthwise, channels, kind))
    return out


def synthetic_space(**options) -> PatchSpace:
    """The patch space of the made-up detector (no model built): one stage per pair of
    feature levels; ``options`` are :class:`~spotpatch.spaces.PatchSpace`'s (``granularity``,
    ``kinds``, ``dtype``)."""
    sites = tuple(
        PatchSite(
            name=site,
            layer="conv",
            weight_shape=(channels, 1 if depthwise else channels, 3, 3),
            bias=False,
            norm=_norm(site),
            norm_features=channels,
            groups=channels if depthwise else 1,
            block=site.rpartition(".")[0],
            stage=f"backbone.features@s{channels}",
        )
        for site, depthwise, channels in SYNTHETIC_SITES
    )
    head = tuple(HeadTensor(name, shape) for name, shape in _HEAD.items())
    return PatchSpace("synthetic", sites, head, **options)


def _preset(name: str) -> dict[str, str]:
    if name == "head":
        return {}
    return {s: ("bn" if name == "dw" and not dw else name) for s, dw, _ in SYNTHETIC_SITES}


def synthetic_meta(name: str, **changes) -> StudyMeta:
    """The metadata of a made-up study called ``name`` (a site-granularity space of a
    ``synthetic`` model, no artifact folder); ``changes`` replace any field."""
    fields = {
        "task": name,
        "classes": ("cat", "dog"),
        "model": "synthetic",
        "checkpoint": None,
        "base_sha256": "0" * 64,
        "granularity": "site",
        "kinds": ("bn", "dw", "lora4", "full"),
        "dtype": "float32",
        "full_bytes": 1000,
        "head_bytes": 100,
        "artifacts": "",
        "spec": "",
        "seed": 0,
        "train": {"steps": 10, "batch_size": 4, "lr": 0.01, "hflip": True},
        "sampler": "nsga2",
        "warm_start": "none",
    }
    return StudyMeta(**{**fields, **changes})


def synthetic_study(
    storage,
    name: str,
    *,
    trials: int = 30,
    seed: int = 0,
    warm_start: bool = True,
    failed: int = 1,
    artifacts: str | Path | None = None,
    classes: tuple[str, ...] = ("cat", "dog"),
):
    """Create study ``name`` in ``storage`` with ``trials`` completed trials (presets ``head`` and
    ``full`` first, then the warm start's configs when ``warm_start``, then random ones, no
    config twice) and
    ``failed`` failed ones. With ``artifacts`` (a folder) every completed trial gets its patch
    tensors as an artifact there, its sha256 recorded as a run records it. Returns the Optuna
    study.
    """
    import numpy as np
    from safetensors.numpy import save

    rng = random.Random(seed)
    full = _preset("full")
    full_bytes, head_bytes = _bytes(_patch_tensors(full)), _bytes(_HEAD)
    meta = synthetic_meta(
        name,
        classes=classes,
        full_bytes=full_bytes,
        head_bytes=head_bytes,
        artifacts=str(Path(artifacts).resolve()) if artifacts else "",
        seed=seed,
        warm_start="relaxation" if warm_start else "none",
    )
    study = create_or_load_study(meta, storage, sampler=None)
    store = artifact_store(artifacts) if artifacts else None
    sites = [s for s, _, _ in SYNTHETIC_SITES]

    def relaxed(level: float) -> tuple[dict[str, str], dict[str, dict[str, float]]]:
        config, probabilities = {}, {}
        for i, site in enumerate(sites):
            patched = max(0.02, min(0.98, level - 0.08 * i + rng.uniform(-0.1, 0.1)))
            kind = "full" if patched > 0.5 else "shared"
            if kind != "shared":
                config[site] = kind
            probabilities[site] = {"shared": 1 - patched, "bn": patched / 2, "full": patched / 2}
        return config, probabilities

    queue: list[tuple[dict[str, str], str, str | None]] = [
        ({}, "preset", "head"),
        (full, "preset", "full"),
    ]
    if warm_start:
        phases = []
        for lam, level in ((0.05, 1.2), (0.2, 0.8), (0.8, 0.4)):
            config, probabilities = relaxed(level)
            if all(config != c for c, _, _ in queue):  # queued once, as a study queues it
                queue.append((config, "relaxation", None))
            phases.append(
                RelaxationPhase(
                    lam=lam,
                    config=PatchConfig.from_dict(config),
                    patch_bytes=_bytes(_patch_tensors(config)),
                    probabilities=probabilities,
                )
            )
        write_relaxation(study, RelaxationResult(phases=tuple(phases), seconds=12.0, steps=60))
    while len(queue) < trials:
        config = {}
        for site, depthwise, _ in SYNTHETIC_SITES:
            kind = rng.choice(_KINDS)
            if kind == "dw" and not depthwise:
                kind = "bn"
            if kind != "shared":
                config[site] = kind
        if all(config != c for c, _, _ in queue):  # as a study, each config trained once
            queue.append((config, "sampler", None))
    made = []
    span = math.log(full_bytes / head_bytes)
    for number, (config, source, preset) in enumerate(queue[:trials]):
        patch_bytes = _bytes(_patch_tensors(config))
        quality = math.log(patch_bytes / head_bytes) / span
        value = min(0.95, max(0.01, 0.6 - 0.45 * math.exp(-4 * quality) + rng.gauss(0, 0.01)))
        artifact_id = sha256 = None
        if store is not None:
            artifact_id = f"{name}-{number}".replace("/", "_")
            blob = save({k: np.zeros(s, np.float32) for k, s in _patch_tensors(config).items()})
            store.write(artifact_id, BytesIO(blob))
            sha256 = sha256_of(blob)
        result = EvalResult(
            map=value,
            map50=min(1.0, value * 1.6),
            patch_bytes=patch_bytes,
            train_seconds=4.0 + rng.random(),
            eval_seconds=1.0,
            config=PatchConfig.from_dict(config),
            tensors={},
        )
        made.append(
            completed_trial(
                result,
                source=source,
                preset=preset,
                artifact_id=artifact_id,
                artifact_sha256=sha256,
            )
        )
    made += [failed_trial(f"RuntimeError: synthetic failure {i} <b>&</b>") for i in range(failed)]
    study.add_trials(made)
    return study
