"""Pretraining a base detector on a COCO set (how the shipped ``spotpatch-tiny`` base was made)."""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

import torch

from spotpatch._defaults import PRETRAIN
from spotpatch._errors import UserError
from spotpatch.evaluators._base import resolve_device, save_base
from spotpatch.evaluators._coco import load_task
from spotpatch.evaluators._detectors import get_detector
from spotpatch.evaluators._metrics import coco_map
from spotpatch.evaluators._trainer import TrainSettings, train_detector

__all__ = ["PretrainResult", "pretrain", "PRETRAIN_SETTINGS"]

#: The recipe of the shipped base.
PRETRAIN_SETTINGS = TrainSettings(**PRETRAIN)


@dataclass(frozen=True)
class PretrainResult:
    map: float
    map50: float
    seconds: float
    sha256: str
    out: Path


def pretrain(
    data: str | Path,
    out: str | Path,
    *,
    model: str = "spotpatch-tiny",
    settings: TrainSettings = PRETRAIN_SETTINGS,
    seed: int = 0,
    device: str = "auto",
    progress: bool | None = None,
) -> PretrainResult:
    """Train every tensor of a fresh detector on ``data`` and save it as a base.

    Args:
        data: a folder with ``train.json`` + ``train/`` and ``val.json`` + ``val/``
            (the layout of ``demo-data``'s ``source/``).
        out: the ``.safetensors`` file to write.
    """
    data, out = Path(data), Path(out)
    if out.suffix != ".safetensors":
        raise UserError(f"--out must be a .safetensors file, got {out}")
    detector = get_detector(model)
    task = load_task(
        data.name,
        train=(data / "train.json", data / "train"),
        val=(data / "val.json", data / "val"),
        resize=detector.resized,
        progress=progress,
    )
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        net = detector.build(task.num_classes)
    net = net.to(resolve_device(device))
    start = time.perf_counter()
    train_detector(
        net,
        list(net.parameters()),
        task.train,
        settings,
        seed=seed,
        progress=progress,
        desc=f"pretraining {model}",
    )
    seconds = time.perf_counter() - start
    value, value50 = coco_map(net, task.val, task.category_ids)
    sha = save_base(
        net,
        model,
        out,
        classes=list(task.classes),
        source=str(data.name),
        steps=settings.steps,
        val_map=round(value, 4),
    )
    return PretrainResult(map=value, map50=value50, seconds=seconds, sha256=sha, out=out)
