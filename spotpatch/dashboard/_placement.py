"""Placement across studies: the kind each selected patch gives each site, and the warm start's
gate probabilities beside it."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

from spotpatch._errors import UserError
from spotpatch.dashboard._site_bytes import module_order
from spotpatch.search import RelaxationPhaseRecord, TrialRecord, relaxation_record, trial_records
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


def _closest_phase(
    phases: Sequence[RelaxationPhaseRecord], target_bytes: int | None
) -> RelaxationPhaseRecord | None:
    if not phases:
        return None
    if target_bytes is None:
        return phases[-1]

    def distance(phase: RelaxationPhaseRecord) -> float:
        size = max(phase.patch_bytes or 1, 1)
        return abs(math.log(size) - math.log(max(target_bytes, 1)))

    return min(phases, key=distance)


def placement(
    studies: Sequence,
    selected: Sequence[int | None],
    *,
    records: Sequence[Sequence[TrialRecord]] | None = None,
) -> Placement:
    """Kinds per site of each study's selected trial, and the relaxation's gate probabilities.

    Args:
        studies: the studies, one row each.
        selected: the selected trial number per study (None: no row content).
        records: each study's trial records, when already read.
    """
    records = records or [trial_records(s) for s in studies]
    site_set: set[str] = set()
    for rs in records:
        for r in rs:
            if r.complete and r.sites:
                site_set.update(r.sites)
    gate_set: set[str] = set()
    phases_of = []
    for study in studies:
        relaxation = relaxation_record(study)
        phases = relaxation.phases if relaxation is not None else ()
        phases_of.append(phases)
        for p in phases:
            gate_set.update(p.probabilities)
            site_set.update(p.sites)
    sites = tuple(sorted(site_set, key=module_order))
    gates = tuple(sorted(gate_set, key=module_order))
    kinds, probs, lambdas = [], [], []
    for rs, number, phases in zip(records, selected, phases_of, strict=True):
        record = next((r for r in rs if r.number == number), None)
        if record is None:
            kinds.append(tuple(None for _ in sites))
        else:
            chosen = record.sites or {}
            kinds.append(tuple(str(chosen.get(s, "shared")) for s in sites))
        phase = _closest_phase(phases, record.patch_bytes if record is not None else None)
        if phase is None:
            probs.append(tuple(None for _ in gates))
            lambdas.append(None)
            continue
        probs.append(tuple(phase.patched_probability(g) for g in gates))
        lambdas.append(phase.lam)
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
