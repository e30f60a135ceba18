"""Choosing one front point: the selection rules of ``export`` and the fleet plan of ``plan``.

Rules (mAP in [0, 1], distances in mAP points, so ``within=1.0`` means 0.01):

- ``knee``: where more bytes stop paying (:func:`knee_point`).
- ``min-map=X``: the smallest patch with mAP >= X.
- ``max-bytes=B``: the best mAP with at most B bytes (``B`` may end in kB, KiB, MB, MiB).
- ``within=D``: the smallest patch within D points of the study's best mAP.
- ``within-full=D``: the smallest patch within D points of the full fine-tune's mAP (the
  study's trials of the ``full`` preset): "as accurate as fine-tuning everything". Unlike
  ``within``, one lucky run of a large patch does not raise the mark.

A config run more than once (``search.repeats``) counts at the mean of its runs, for every rule
and for the full fine-tune's mark. The study's own answer, and every rule applied to a study,
go through :mod:`._answer`.

The fleet plan picks one front point per study to maximize the mean mAP under a total byte
budget: a multiple-choice knapsack, solved exactly by merging each study's choices into the
Pareto set of (total bytes, total mAP) of the studies so far.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from spotpatch._errors import UserError
from spotpatch.search._pareto import FrontPoint, knee_point, pareto_front
from spotpatch.search._units import EPS, floor, reaches
from spotpatch.spaces import parse_bytes

__all__ = [
    "SelectionRule",
    "parse_rule",
    "select_point",
    "FleetPlan",
    "plan_fleet",
]


@dataclass(frozen=True)
class SelectionRule:
    """A parsed rule: ``kind`` is knee | min-map | max-bytes | within | within-full, ``value``
    its number.

    Example:
        >>> parse_rule("max-bytes=200KiB")
        SelectionRule(kind='max-bytes', value=204800.0)
    """

    kind: str
    value: float | None = None

    def __str__(self) -> str:
        if self.kind == "knee":
            return "knee"
        if self.kind == "max-bytes":
            return f"max-bytes={int(self.value)}"
        return f"{self.kind}={self.value:g}"


def parse_rule(text: str) -> SelectionRule:
    """Parse a selection rule; a bad one is a UserError naming the accepted forms."""
    forms = "knee, min-map=X, max-bytes=B, within=D or within-full=D"
    text = str(text).strip()
    if text == "knee":
        return SelectionRule("knee")
    kind, sep, value = text.partition("=")
    if not sep or kind not in ("min-map", "max-bytes", "within", "within-full"):
        raise UserError(f"unknown selection rule {text!r}: use {forms}")
    if kind == "max-bytes":
        return SelectionRule(kind, float(parse_bytes(value)))
    try:
        number = float(value)
    except ValueError:
        raise UserError(f"selection rule {text!r}: {value!r} is not a number") from None
    if kind == "min-map" and not 0.0 <= number <= 1.0:
        raise UserError(f"selection rule {text!r}: mAP is in [0, 1]")
    if kind in ("within", "within-full") and number < 0:
        raise UserError(f"selection rule {text!r}: the distance must be >= 0 mAP points")
    return SelectionRule(kind, number)


def select_point(
    points: Sequence[FrontPoint],
    rule: SelectionRule | str,
    full_bytes: int,
    *,
    full_map: float | None = None,
) -> FrontPoint:
    """The point a rule picks among finished trials (always a front point). ``full_map``: the
    full fine-tune's mAP (the mean of its runs), which ``within-full`` measures from.

    Raises:
        UserError: no trial, or none satisfies the rule (the message says what is there).
    """
    rule = parse_rule(rule) if isinstance(rule, str) else rule
    front = pareto_front(points)
    if not front:
        raise UserError("the study has no completed trial to select from")
    if rule.kind == "knee":
        return knee_point(front, full_bytes)
    if rule.kind == "within":  # the best reaches its own floor
        return _smallest_reaching(front, floor(front[-1].map, rule.value))
    if rule.kind in ("within-full", "min-map"):
        if rule.kind == "min-map":
            low, wanted = rule.value, f"reaches mAP {rule.value:g}"
        elif full_map is None:
            raise UserError(
                f"rule {rule} needs the full fine-tune's trial: run the study with the preset full"
            )
        else:
            low = floor(full_map, rule.value)
            wanted = f"comes within {rule.value:g} points of the full fine-tune's {full_map:.4f}"
        point = _smallest_reaching(front, low)
        if point is None:
            raise UserError(f"no trial {wanted} (rule {rule}); the best is {front[-1].map:.4f}")
        return point
    fits = [p for p in front if p.bytes <= rule.value]
    if not fits:
        raise UserError(
            f"no trial has at most {int(rule.value):,} bytes (rule {rule}); "
            f"the smallest has {front[0].bytes:,}"
        )
    return fits[-1]


def _smallest_reaching(front: Sequence[FrontPoint], low: float) -> FrontPoint | None:
    """The smallest front point (``front`` is ordered by bytes) with mAP at least ``low``."""
    return next((p for p in front if reaches(p.map, low)), None)


@dataclass(frozen=True)
class FleetPlan:
    """One chosen front point per study under a total byte budget.

    Attributes:
        budget: the byte budget.
        choices: study name -> chosen point.
        total_bytes: bytes of all chosen patches.
        mean_map: their mean mAP.
        full_bytes: bytes of one full detector per task (the alternative to patches).
    """

    budget: int
    choices: Mapping[str, FrontPoint]
    total_bytes: int
    mean_map: float
    full_bytes: int

    def to_json(self) -> dict:
        return {
            "budget": self.budget,
            "total_bytes": self.total_bytes,
            "mean_map": self.mean_map,
            "full_bytes": self.full_bytes,
            "choices": {
                name: {"trial": p.number, "map": p.map, "patch_bytes": p.bytes}
                for name, p in self.choices.items()
            },
        }


def plan_fleet(
    fronts: Mapping[str, Sequence[FrontPoint]],
    budget: int,
    full_bytes: Mapping[str, int] | None = None,
) -> FleetPlan:
    """Maximize the mean mAP of one point per study with total bytes <= ``budget``, exactly.

    States are (total bytes, total mAP, choices) after each study, reduced to their Pareto set
    (fewer bytes or more mAP); every optimum survives that reduction, so the best state within
    the budget at the end is optimal. Ties go to fewer bytes.

    Raises:
        UserError: no study, a study without a finished trial, or a budget below the sum of the
            smallest patches (the message gives that sum).
    """
    if not fronts:
        raise UserError("no study to plan: run a study first")
    names = sorted(fronts)
    states: list[tuple[int, float, tuple[FrontPoint, ...]]] = [(0, 0.0, ())]
    for name in names:
        front = pareto_front(fronts[name])
        if not front:
            raise UserError(f"study {name!r} has no completed trial to plan with")
        merged = sorted(
            (
                (b + p.bytes, m + p.map, chosen + (p,))
                for b, m, chosen in states
                for p in front
                if b + p.bytes <= budget
            ),
            key=lambda s: (s[0], -s[1]),
        )
        states = []
        for s in merged:
            if not states or s[1] > states[-1][1] + EPS:
                states.append(s)
        if not states:
            need = sum(pareto_front(fronts[n])[0].bytes for n in names if fronts[n])
            raise UserError(
                f"a budget of {budget:,} bytes cannot hold even the smallest patch of every "
                f"study ({need:,} bytes)"
            )
    total, summed, chosen = states[-1]  # the most mAP, the fewest bytes among equals
    return FleetPlan(
        budget=budget,
        choices=dict(zip(names, chosen, strict=True)),
        total_bytes=total,
        mean_map=summed / len(names),
        full_bytes=sum((full_bytes or {}).get(n, 0) for n in names),
    )
