"""Placement across studies: the kind each selected patch gives each site, and the warm start's
gate probabilities beside it."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

from spotpatch._errors import UserError
from spotpatch.dashboard._site_bytes import module_order
from spotpatch.spaces import parse_kind

__all__ = ["Placement", "placement", "kind_strength"]


@dataclass(frozen=True)
class Placement:
    """Where each task's selected patch spends its bytes, and what the warm start suggested.

    Attributes:
        tasks: one row per study.
        sites: the sites any trial of any study patched, in module order.
        kinds: tasks x sites: the kind of the selected patch (``shared`` when unpatched; None
            when the task has no selected trial or no such site).
        gates: the relaxation's gate labels (sites, blocks or stages), in module order.
        patched_probability: tasks x gates: the relaxation's probability of a kind other than
            ``shared`` (None without a warm start or without that gate).
        relaxation_lambda: per task, the size penalty of the relaxation phase shown: the one
            whose patch is closest in size to the selected patch.
    """

    tasks: tuple[str, ...]
    sites: tuple[str, ...]
    kinds: tuple[tuple[str | None, ...], ...]
    gates: tuple[str, ...]
    patched_probability: tuple[tuple[float | None, ...], ...]
    relaxation_lambda: tuple[float | None, ...]


def _complete(trials) -> list:
    import optuna

    done = optuna.trial.TrialState.COMPLETE
    return [t for t in trials if t.state == done and t.values is not None]


def _closest_phase(phases: list[dict], target_bytes: int | None) -> dict | None:
    if not phases:
        return None
    if target_bytes is None:
        return phases[-1]

    def distance(phase: dict) -> float:
        size = max(int(phase.get("patch_bytes") or 1), 1)
        return abs(math.log(size) - math.log(max(target_bytes, 1)))

    return min(phases, key=distance)


def placement(studies: Sequence, selected: Sequence[int | None], *, trials=None) -> Placement:
    """Kinds per site of each study's selected trial, and the relaxation's gate probabilities.

    Args:
        studies: the studies, one row each.
        selected: the selected trial number per study (None: no row content).
        trials: each study's trials, when already loaded.
    """
    trials = trials or [s.get_trials(deepcopy=False) for s in studies]
    site_set: set[str] = set()
    for ts in trials:
        for t in _complete(ts):
            config = t.user_attrs.get("config")
            if isinstance(config, dict):
                site_set.update(config)
    gate_set: set[str] = set()
    phases_of = []
    for study in studies:
        relaxation = study.user_attrs.get("relaxation") or {}
        phases = [p for p in relaxation.get("phases", []) if isinstance(p, dict)]
        phases_of.append(phases)
        for p in phases:
            gate_set.update(p.get("probabilities") or {})
            site_set.update(p.get("config") or {})
    sites = tuple(sorted(site_set, key=module_order))
    gates = tuple(sorted(gate_set, key=module_order))
    kinds, probs, lambdas = [], [], []
    for ts, number, phases in zip(trials, selected, phases_of, strict=True):
        trial = next((t for t in ts if t.number == number), None)
        if trial is None:
            kinds.append(tuple(None for _ in sites))
        else:
            config = trial.user_attrs.get("config") or {}
            kinds.append(tuple(str(config.get(s, "shared")) for s in sites))
        phase = _closest_phase(phases, int(trial.values[1]) if trial is not None else None)
        if phase is None:
            probs.append(tuple(None for _ in gates))
            lambdas.append(None)
            continue
        table = phase.get("probabilities") or {}
        probs.append(
            tuple(
                (1.0 - float(table[g].get("shared", 0.0))) if g in table else None for g in gates
            )
        )
        lambdas.append(float(phase["lambda"]) if "lambda" in phase else None)
    return Placement(
        tasks=tuple(s.study_name for s in studies),
        sites=sites,
        kinds=tuple(kinds),
        gates=gates,
        patched_probability=tuple(probs),
        relaxation_lambda=tuple(lambdas),
    )


def kind_strength(kind: str | None) -> tuple[int, int]:
    """An order of kinds from ``shared`` (weakest) to ``full``; unknown kinds sort last."""
    if kind is None:
        return (-1, 0)
    try:
        return parse_kind(kind).strength
    except UserError:
        return (99, 0)
