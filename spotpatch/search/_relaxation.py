"""The warm start: a differentiable relaxation of the patch gates, swept over a size penalty.

One training run in which every gate carries all its kinds at once (:class:`MixedPatch`) with a
learnable distribution over them, sampled by a straight-through Gumbel-softmax at a temperature
annealed from 1.0 to 0.1. The loss is the detection loss plus ``lambda`` times the expected
patch bytes as a fraction of the full patch. ``lambda`` climbs through a few phases in the same
run (a path, not separate runs); the discrete config read off at the end of each phase gives a
config per size level, which become the study's first trials.
"""

from __future__ import annotations

import math
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from dataclasses import replace as _replace

import torch

from spotpatch.evaluators import Base, Task, TrainSettings, train_detector
from spotpatch.spaces import MixedPatch, PatchConfig, PatchSpace

__all__ = ["RelaxationResult", "RelaxationPhase", "relax", "DEFAULT_LAMBDAS"]

#: A first phase without penalty puts one config at the accurate end of the front.
DEFAULT_LAMBDAS = (0.0, 0.05, 0.2, 0.8, 3.0)
#: Gate logits move faster than weights: they start at zero and must commit within a phase.
GATE_LR = 5e-2


@dataclass(frozen=True)
class RelaxationPhase:
    """What the gates said at the end of one penalty level."""

    lam: float
    config: PatchConfig
    patch_bytes: int
    probabilities: dict[str, dict[str, float]] = field(repr=False)


@dataclass(frozen=True)
class RelaxationResult:
    """The warm start's output: a config per penalty level, and its cost.

    Attributes:
        phases: one per ``lambda``, in increasing order.
        seconds: wall time of the run.
        steps: optimizer steps of the run.
    """

    phases: tuple[RelaxationPhase, ...]
    seconds: float
    steps: int

    def distinct_configs(self) -> list[PatchConfig]:
        """The phases' configs, duplicates dropped, smallest patch last (phase order)."""
        seen: list[PatchConfig] = []
        for phase in self.phases:
            if phase.config not in seen:
                seen.append(phase.config)
        return seen


def relax(
    base: Base,
    task: Task,
    space: PatchSpace,
    settings: TrainSettings,
    *,
    lambdas: Sequence[float] = DEFAULT_LAMBDAS,
    steps: int | None = None,
    seed: int = 0,
    hard: bool = True,
    gate_lr: float = GATE_LR,
    warmup: float = 0.0,
    progress: bool | None = None,
) -> RelaxationResult:
    """Run the gate relaxation for one task and read off a config per penalty level.

    Args:
        base: the shared base.
        task: the task (its train split trains the gates).
        space: the study's patch space; gates follow its granularity.
        settings: training settings of the study (batch size and learning rate).
        lambdas: penalty levels, applied in increasing order in equal phases of the run.
        steps: length of the whole run (default: one trial's steps).
        seed: seeds the head, deltas, Gumbel noise and batch order.
        hard: straight-through draws (one kind per gate in the forward); otherwise every
            kind mixes in with its Gumbel-softmax weight, so every delta trains at each step.
        gate_lr: the gate logits' learning rate.
        warmup: steps before the first phase, as a fraction of ``steps``, in which the gates
            stay uniform and only the deltas train: every kind's delta learns before the gates
            compare them (a fresh delta of a large kind is not yet worth its bytes).
    """
    lambdas = sorted(lambdas)
    total = steps or settings.steps
    phase_len = max(1, total // len(lambdas))
    warm = round(warmup * phase_len * len(lambdas))
    total = warm + phase_len * len(lambdas)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        skeleton = base.detector.build(task.num_classes).to(base.device)
        mixed = MixedPatch(
            skeleton, base.state, space, generator=torch.Generator().manual_seed(seed)
        )
        phases: list[RelaxationPhase] = []
        state = {"lam": lambdas[0]}

        def before_step(step: int) -> None:
            gates_learn = step > warm
            for logits in mixed.logits:
                logits.requires_grad_(gates_learn)
            # Temperature decays geometrically over the phases, 1.0 -> 0.1.
            at = max(0, step - 1 - warm)
            tau = math.exp(math.log(0.1) * at / max(1, total - warm - 1))
            state["lam"] = lambdas[min(at // phase_len, len(lambdas) - 1)] if gates_learn else 0.0
            mixed.sample(tau, hard=hard, noise=True)

        def end_of_phase(step: int) -> None:
            config = mixed.freeze()
            phases.append(
                RelaxationPhase(
                    lam=state["lam"],
                    config=config,
                    patch_bytes=space.patch_bytes(config),
                    probabilities=mixed.probabilities(),
                )
            )

        deltas = dict(mixed.deltas)
        deltas["weight"] = deltas["weight"] + mixed.head_parameters
        # Each delta trains at the rate its tensors train at in a trial.
        groups = [*settings.param_groups(deltas), {"params": mixed.logits, "lr": gate_lr}]
        start = time.perf_counter()
        train_detector(
            mixed.model,
            groups,
            task.train,
            _replace(settings, steps=total, schedule="constant"),
            seed=seed,
            checkpoints=[warm + phase_len * (i + 1) for i in range(len(lambdas))],
            on_checkpoint=end_of_phase,
            before_step=before_step,
            extra_loss=lambda: state["lam"] * mixed.expected_bytes(),
            progress=progress,
            desc=f"{task.name}: gate relaxation",
        )
    return RelaxationResult(phases=tuple(phases), seconds=time.perf_counter() - start, steps=total)
