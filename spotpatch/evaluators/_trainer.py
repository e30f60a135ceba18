"""Training: the patch trainer (only patch tensors move) and the loop pretraining shares.

AdamW with a one-cycle schedule, no weight decay: a patch starts at the base's values, and decay
would pull it toward zero, not toward the base. Batches come from a seeded generator.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch
from torch import nn

from spotpatch._errors import UserError
from spotpatch.evaluators._coco import CocoSplit, sample
from spotpatch.evaluators._prefix import cache_size_problem
from spotpatch.evaluators._progress import progress_bar

__all__ = ["TrainSettings", "train_detector", "batches", "StepLosses"]

#: ``losses(indices, flips)``: a step's detection losses from its images' indices in the split
#: and whether each is flipped; what ``model(images, targets)`` gives for that batch.
StepLosses = Callable[[Sequence[int], Sequence[bool]], dict[str, torch.Tensor]]


@dataclass(frozen=True)
class TrainSettings:
    """How one patch (or a base) trains.

    Attributes:
        steps: optimizer steps.
        batch_size: images per step (at least 2: patched norm layers use batch statistics).
        lr: peak learning rate of the one-cycle schedule.
        weight_decay: AdamW weight decay.
        hflip: flip training images horizontally at random (off: it changes letters and
            left/right classes).
        clip: gradient-norm clip.
        schedule: ``onecycle`` (warm up over the first quarter, then cosine to zero) or
            ``constant``.
        norm_lr_scale: multiplies ``lr`` for patched norm layers (their affine parameters).
        lora_lr_scale: multiplies ``lr`` for low-rank factors. Layers' own weights and the
            class head train at ``lr``.
        prefix_cache: the most memory cached frozen activations may take in this process:
            ``auto`` (a share of the memory available on the device), ``off``, or a size
            (``512MiB``, ``2GB``, ``1000000``). See :mod:`spotpatch.evaluators._prefix`.
    """

    steps: int = 300
    batch_size: int = 16
    lr: float = 1e-2
    weight_decay: float = 0.0
    hflip: bool = False
    clip: float = 10.0
    schedule: str = "onecycle"
    norm_lr_scale: float = 3.0
    lora_lr_scale: float = 3.0
    prefix_cache: str = "auto"

    def __post_init__(self) -> None:
        if self.steps < 1:
            raise UserError(f"train.steps must be at least 1, got {self.steps}")
        if self.batch_size < 2:
            raise UserError(f"train.batch_size must be at least 2, got {self.batch_size}")
        if not self.lr > 0:
            raise UserError(f"train.lr must be positive, got {self.lr}")
        if self.schedule not in ("onecycle", "constant"):
            raise UserError(f"train.schedule must be onecycle or constant, got {self.schedule!r}")
        for name in ("norm_lr_scale", "lora_lr_scale"):
            if not getattr(self, name) > 0:
                raise UserError(f"train.{name} must be positive, got {getattr(self, name)}")
        problem = cache_size_problem(self.prefix_cache)
        if problem:
            raise UserError(f"train.prefix_cache {problem}, got {self.prefix_cache!r}")

    def lr_of(self, role: str) -> float:
        """The peak learning rate of a tensor role (``weight``, ``norm`` or ``lora``)."""
        scale = {"norm": self.norm_lr_scale, "lora": self.lora_lr_scale}.get(role, 1.0)
        return self.lr * scale

    def param_groups(self, by_role: dict[str, list[nn.Parameter]]) -> list[dict]:
        """Optimizer groups for parameters grouped by role, each at its role's rate."""
        return [{"params": ps, "lr": self.lr_of(role)} for role, ps in by_role.items() if ps]


def batches(split: CocoSplit, batch_size: int, generator: torch.Generator):
    """Endless batches of image indices: seeded reshuffles, every image once per epoch."""
    while True:
        order = torch.randperm(len(split), generator=generator).tolist()
        # A short final batch would make patched norms train on a tiny batch: wrap around.
        order += order[: (-len(order)) % batch_size]
        for i in range(0, len(order), batch_size):
            yield order[i : i + batch_size]


def _flips(count: int, hflip: bool, generator: torch.Generator) -> list[bool]:
    """Which images of a batch are flipped: one draw per image, in batch order."""
    if not hflip:
        return [False] * count
    return [bool(torch.rand((), generator=generator) < 0.5) for _ in range(count)]


def _batch(split: CocoSplit, idx: Sequence[int], device, flips: Sequence[bool]):
    pairs = [sample(split, i, device, f) for i, f in zip(idx, flips, strict=True)]
    return [p[0] for p in pairs], [p[1] for p in pairs]


def train_detector(
    model: nn.Module,
    params: list[nn.Parameter] | list[dict],
    split: CocoSplit,
    settings: TrainSettings,
    *,
    seed: int = 0,
    checkpoints: Sequence[int] = (),
    on_checkpoint: Callable[[int], None] | None = None,
    before_step: Callable[[int], None] | None = None,
    extra_loss: Callable[[], torch.Tensor] | None = None,
    step_losses: StepLosses | None = None,
    progress: bool | None = None,
    desc: str = "training",
) -> float:
    """Train ``params`` of ``model`` on a split; returns training seconds.

    Args:
        params: parameters, or optimizer groups (dicts with ``params`` and an optional peak
            ``lr`` of their own).
        on_checkpoint: ``on_checkpoint(step)`` runs after each step listed in ``checkpoints``
            (the model goes back to train mode after it); an exception from it stops training
            and propagates.
        before_step: ``before_step(step)`` runs before each forward.
        extra_loss: ``extra_loss()`` is added to the detection loss at each step.
        step_losses: computes each step's detection losses in place of
            ``model(images, targets)`` (from cached activations); the batches and flips drawn
            are the same either way.
    """
    groups = [g if isinstance(g, dict) else {"params": [g]} for g in params]
    groups = [g for g in groups if g["params"]]
    if not groups:
        raise ValueError("nothing to train")
    trained = [p for g in groups for p in g["params"]]
    device = trained[0].device
    # Denormal floats appear early in training and slow CPU kernels by an order of magnitude.
    torch.set_flush_denormal(True)
    generator = torch.Generator().manual_seed(seed)
    optimizer = torch.optim.AdamW(groups, lr=settings.lr, weight_decay=settings.weight_decay)
    # One-cycle needs at least two steps per phase; shorter runs keep the rate constant.
    if settings.schedule == "onecycle" and settings.steps >= 4:
        schedule = torch.optim.lr_scheduler.OneCycleLR(
            optimizer,
            max_lr=[g.get("lr", settings.lr) for g in groups],
            total_steps=settings.steps,
            pct_start=max(0.25, 2 / settings.steps),
        )
    else:
        schedule = torch.optim.lr_scheduler.ConstantLR(optimizer, factor=1.0)
    stream = batches(split, settings.batch_size, generator)
    marks = set(checkpoints)
    model.train()
    start = time.perf_counter()
    elapsed = 0.0
    bar = progress_bar(range(1, settings.steps + 1), desc=desc, unit="step", progress=progress)
    for step in bar:
        idx = next(stream)
        flips = _flips(len(idx), settings.hflip, generator)
        if step_losses is None:
            images, targets = _batch(split, idx, device, flips)
        if before_step is not None:
            before_step(step)
        losses = model(images, targets) if step_losses is None else step_losses(idx, flips)
        loss = sum(losses.values())
        if extra_loss is not None:
            loss = loss + extra_loss()
        if not torch.isfinite(loss):
            raise FloatingPointError(f"training diverged at step {step} (loss {loss.item()})")
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(trained, settings.clip)
        optimizer.step()
        schedule.step()
        if step % 10 == 0:
            bar.set_postfix(loss=f"{loss.item():.3f}", refresh=False)
        if step in marks and on_checkpoint is not None:
            elapsed += time.perf_counter() - start
            on_checkpoint(step)
            model.train()
            start = time.perf_counter()
    bar.close()
    return elapsed + time.perf_counter() - start
