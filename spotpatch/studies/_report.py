"""The comparison across tasks: every technique (preset) against each study's answer.

One row per study, ordered by difficulty (the full fine-tune's mAP minus the head-only mAP,
both the means of their runs in the study), then the claims, computed from the rows:

- (a) *search against techniques*: in how many studies the smallest searched patch within the
  study's tolerance of the full fine-tune is no larger than the smallest preset within it (the
  search beats the existing techniques at the task's accuracy). Studies without the full
  fine-tune do not count; a study where no preset comes within the tolerance counts for the
  search when a searched patch does.
- (b) *size*: the mean and the largest bytes of the answers, as a % of the full detector, and
  their mean Δ to the full fine-tune (the fresh seeds' paired Δ where confirmed, the search's
  means elsewhere).
- (c) *difficulty*: Spearman's rho (with its p-value) between difficulty and the answer's
  bytes %: does the patch grow with the task's difficulty? Studies without both the head-only
  and the full fine-tune are left out, with a note.
- (d) *confirmed*: of the studies whose answer was measured on fresh seeds, in how many its
  paired Δ is within the tolerance, and their mean bytes %.

Every row's answer is the study's own (:func:`spotpatch.search.study_answer`), or what an
explicit rule picks there: the same trial ``export``, ``status``, ``plan`` and the dashboard
name. The words are :mod:`._report_text`'s.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

from spotpatch._errors import UserError
from spotpatch.search import (
    Answer,
    FrontPoint,
    Paired,
    SelectionRule,
    TrialRecord,
    answer_inputs,
    front_points,
    full_point,
    parse_rule,
    point_of,
    preset_runs,
    searched_trials,
    select,
    smallest_within,
    study_meta,
    within,
)
from spotpatch.spaces import PRESETS
from spotpatch.studies._select import each_study

__all__ = [
    "TechniqueResult",
    "ReportRow",
    "ReportClaims",
    "FleetReport",
    "fleet_report",
    "report_of",
    "report_row",
]


@dataclass(frozen=True)
class TechniqueResult:
    """A patch in the table: its (first) trial, val mAP (the mean over ``runs`` runs of its
    config), bytes, bytes as a % of the full detector, and the preset it equals, if any."""

    trial: int
    map: float
    bytes: int
    bytes_pct: float
    runs: int = 1
    preset: str | None = None


@dataclass(frozen=True)
class ReportRow:
    """One study's row.

    Attributes:
        study: the study (its task).
        difficulty: full fine-tune mAP minus head-only mAP (None without both).
        tolerance: the study's tolerance in mAP points.
        techniques: preset name -> its result in the study (the mean of its runs).
        answer: the study's answer (or the rule's pick); None: none (see ``note``).
        delta_vs_full: the answer's mAP minus the full fine-tune's: the fresh seeds' mean
            paired Δ where ``confirmed``, the search's means elsewhere (None without both).
        confirmed: the answer against the full fine-tune on fresh paired seeds, if measured.
        holds: whether ``confirmed`` is within the tolerance (None: not measured).
        said: the confirmed Δ as the commands print it
            (:meth:`~spotpatch.search.Confirmation.delta_text`; None: not measured).
        walked_out: the confirmation's walk reached the full fine-tune: no smaller patch held.
        state: the confirmation's state (``deciding``, ``reporting``, ``done``, ``failed``),
            None without one.
        searched: the smallest searched patch within the tolerance (None: none, or no full
            fine-tune).
        preset_within: the smallest preset within the tolerance, by name (None: none).
        note: why ``answer`` is None, or what the confirmation said.
    """

    study: str
    difficulty: float | None
    tolerance: float
    techniques: dict[str, TechniqueResult]
    answer: TechniqueResult | None
    delta_vs_full: float | None
    confirmed: Paired | None = None
    holds: bool | None = None
    said: str | None = None
    walked_out: bool = False
    state: str | None = None
    searched: TechniqueResult | None = None
    preset_within: str | None = None
    note: str | None = None

    @property
    def search_wins(self) -> bool | None:
        """Claim (a) for this study: the smallest searched patch within the tolerance is no
        larger than the smallest preset within it (None: no full fine-tune to measure from)."""
        if "full" not in self.techniques and self.searched is None:
            return None
        if self.searched is None:
            return False
        if self.preset_within is None:
            return True
        return self.searched.bytes <= self.techniques[self.preset_within].bytes


@dataclass(frozen=True)
class ReportClaims:
    """The summary claims, computed from the rows.

    Attributes:
        search_wins: studies where the search's smallest patch within the tolerance is no
            larger than the smallest preset within it; ``compared`` is their denominator.
        mean_bytes_pct: mean bytes % of the answers (None: no answer).
        max_bytes_pct: the largest of them.
        mean_delta_vs_full: mean mAP difference of the answers to the full fine-tune.
        rho: Spearman's rho of difficulty against the answer's bytes % (None: fewer than 3
            studies have both, or one side is constant).
        p_value: its two-sided p-value.
        correlated: the studies ``rho`` is computed on.
        notes: why studies were left out of a claim: one line per reason, naming them.
        confirmed: studies whose answer was measured on fresh seeds.
        held: of those, the studies where it holds within their tolerance.
        walked_out: of those, the studies whose answer is the full fine-tune because no
            smaller patch held.
        mean_held_pct: the mean bytes % of those answers (None: none).
    """

    search_wins: int
    compared: int
    mean_bytes_pct: float | None
    max_bytes_pct: float | None
    mean_delta_vs_full: float | None
    rho: float | None
    p_value: float | None
    correlated: tuple[str, ...]
    notes: tuple[str, ...]
    confirmed: int = 0
    held: int = 0
    mean_held_pct: float | None = None
    walked_out: int = 0


@dataclass(frozen=True)
class FleetReport:
    """The comparison across tasks (see the module docstring). ``rule``: ``answer``, or the
    explicit rule every row's patch was picked by."""

    rule: str
    techniques: tuple[str, ...]
    rows: tuple[ReportRow, ...]
    claims: ReportClaims

    def to_json(self) -> dict[str, Any]:
        return {
            "rule": self.rule,
            "techniques": list(self.techniques),
            "rows": [asdict(r) | {"search_wins": r.search_wins} for r in self.rows],
            "claims": asdict(self.claims),
        }


def _result(point: FrontPoint, full_bytes: int, preset: str | None = None) -> TechniqueResult:
    return TechniqueResult(
        trial=point.number,
        map=point.map,
        bytes=point.bytes,
        bytes_pct=100.0 * point.bytes / full_bytes,
        runs=point.runs,
        preset=preset,
    )


def report_row(
    name: str,
    records: Sequence[TrialRecord],
    full_bytes: int,
    answer: Answer | str,
    tolerance: float,
) -> ReportRow:
    """One study's row, from its trial records and its answer (or why it has none)."""
    points = front_points(records)
    techniques = {
        preset: _result(point_of(runs[0].number, records, points), full_bytes, preset)
        for preset, runs in preset_runs(records).items()
    }
    full = full_point(records)
    searched = preset_within = None
    if full is not None:
        found = smallest_within(front_points(searched_trials(records)), full.map, tolerance)
        searched = None if found is None else _result(found, full_bytes)
        by_size = sorted(techniques.items(), key=lambda item: (item[1].bytes, item[0]))
        preset_within = next((n for n, t in by_size if within(t.map, full.map, tolerance)), None)
    head = techniques.get("head")
    difficulty = full.map - head.map if head is not None and full is not None else None
    if isinstance(answer, str):
        return ReportRow(name, difficulty, tolerance, techniques, None, None, searched=searched,
                         preset_within=preset_within, note=answer)  # fmt: skip
    c = answer.confirmation
    confirmed = c.reported if c is not None else None
    delta = None
    if confirmed is not None:
        delta = confirmed.delta
    elif answer.full_map is not None:
        delta = answer.map - answer.full_map
    point = FrontPoint(answer.trial, answer.map, answer.patch_bytes, answer.runs)
    return ReportRow(
        study=name,
        difficulty=difficulty,
        tolerance=tolerance,
        techniques=techniques,
        answer=_result(point, full_bytes, answer.preset),
        delta_vs_full=delta,
        confirmed=confirmed,
        holds=None if c is None else c.holds,
        said=None if c is None else c.delta_text(),
        walked_out=c is not None and c.walked_out,
        state=None if c is None else c.state,
        searched=searched,
        preset_within=preset_within,
        note=None if c is None else c.note,
    )


def _mean(values: Sequence[float]) -> float | None:
    return sum(values) / len(values) if values else None


def _grouped(notes: Sequence[tuple[str, str]]) -> tuple[str, ...]:
    """``(study, why)`` pairs as lines ``a, b, c: why``, one per reason in the order first
    seen: with many studies, a reason they share is said once.

    >>> _grouped([("a", "no full"), ("b", "no head"), ("c", "no full")])
    ('a, c: no full', 'b: no head')
    """
    by_reason: dict[str, list[str]] = {}
    for study, why in notes:
        by_reason.setdefault(why, []).append(study)
    return tuple(f"{', '.join(studies)}: {why}" for why, studies in by_reason.items())


def report_claims(rows: Sequence[ReportRow]) -> ReportClaims:
    """The claims (a) to (d) from the rows."""
    notes = [
        (r.study, "no full fine-tune to measure the tolerance from; left out of (a)")
        for r in rows
        if r.search_wins is None
    ]
    chosen = [r for r in rows if r.answer is not None]
    notes += [(r.study, f"no answer ({r.note}); left out of (b), (c) and (d)") for r in rows
              if r.answer is None]  # fmt: skip
    pairs = [r for r in chosen if r.difficulty is not None]
    notes += [
        (r.study, "no head-only and full fine-tune pair to measure difficulty; left out of (c)")
        for r in chosen
        if r.difficulty is None
    ]
    rho = p_value = None
    if len(pairs) >= 3:
        from scipy.stats import spearmanr

        result = spearmanr([r.difficulty for r in pairs], [r.answer.bytes_pct for r in pairs])
        if math.isfinite(result.statistic):
            rho, p_value = float(result.statistic), float(result.pvalue)
    compared = [r for r in rows if r.search_wins is not None]
    confirmed = [r for r in chosen if r.confirmed is not None]
    held = [r.answer.bytes_pct for r in confirmed if r.holds]
    deltas = [r.delta_vs_full for r in chosen if r.delta_vs_full is not None]
    sizes = [r.answer.bytes_pct for r in chosen]
    return ReportClaims(
        search_wins=sum(bool(r.search_wins) for r in compared),
        compared=len(compared),
        mean_bytes_pct=_mean(sizes),
        max_bytes_pct=max(sizes) if sizes else None,
        mean_delta_vs_full=_mean(deltas),
        rho=rho,
        p_value=p_value,
        correlated=tuple(r.study for r in pairs),
        notes=_grouped(notes),
        confirmed=len(confirmed),
        held=len(held),
        mean_held_pct=_mean(held),
        walked_out=sum(r.walked_out for r in confirmed),
    )


def report_of(
    studies: Sequence,
    rule: SelectionRule | str | None = None,
    *,
    records: Sequence[Sequence[TrialRecord]] | None = None,
) -> FleetReport:
    """The report of some studies (Optuna studies made by spotpatch): each row's patch is the
    study's answer, or the trial ``rule`` picks there. ``records``: each study's trial
    records, when already read (reading them is most of the report's time)."""
    parsed = None if rule is None else (parse_rule(rule) if isinstance(rule, str) else rule)
    rows = []
    for i, study in enumerate(studies):
        inputs = answer_inputs(study, None if records is None else records[i])
        try:
            answer: Answer | str = select(inputs, parsed)
        except UserError as e:
            answer = str(e)
        rows.append(
            report_row(
                study.study_name,
                inputs.records,
                study_meta(study).full_bytes,
                answer,
                inputs.tolerance,
            )
        )
    # Easiest first; studies without a difficulty last, by name.
    rows.sort(key=lambda r: (r.difficulty is None, r.difficulty or 0.0, r.study))
    used = {name for r in rows for name in r.techniques}
    return FleetReport(
        rule="answer" if parsed is None else str(parsed),
        techniques=tuple(p for p in PRESETS if p in used),
        rows=tuple(rows),
        claims=report_claims(rows),
    )


def fleet_report(storage, rule: SelectionRule | str | None = None) -> FleetReport:
    """The report of every spotpatch study in a storage.

    Raises:
        UserError: a bad rule, or no spotpatch study in the storage.
    """
    parsed = None if rule is None else parse_rule(rule)
    return report_of(list(each_study(storage)), parsed)
