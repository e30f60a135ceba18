"""The comparison across tasks: every technique (preset) against the selected searched patch.

One row per study, ordered by difficulty (the full fine-tune's mAP minus the head-only mAP, both
measured in the study), then the claims the paper makes, computed from the rows:

- (a) *matched*: in how many studies the searched trials (presets left out) match or beat every
  preset run there. A preset is matched when some searched trial has mAP at least the preset's
  minus :data:`MATCH_TOLERANCE` with no more bytes. Studies without presets do not count.
- (b) *size*: the mean and the largest patch bytes of the selected searched patches, as a % of
  the full detector, and their mean mAP difference to the full fine-tune.
- (c) *difficulty*: Spearman's rho (with its p-value) between difficulty and the selected
  patch's bytes %: does the patch grow with the task's difficulty? Studies without both the
  head-only and the full fine-tune are left out, with a note.

"Searched" trials are the completed ones that the search proposed (the warm start and the
sampler), retries of them included, and the sampler's proposals of a config trained before
(a preset's included: the search found it; they hold its result); the trials queued as
presets, and their retries, are left out. The selected searched patch is the one the
selection rule picks among them.

Where ``spotpatch confirm`` retrained the selected patch and the full fine-tune with other
seeds, the difference to the full fine-tune is the difference of their mean mAPs, shown with
its standard deviation and the number of seeds; elsewhere it is the difference of single runs.
With a ``within=D`` or ``within-full=D`` rule, each row also names the smallest searched patch
whose retrainings come within D points of the full fine-tune's (``held``: the answer
``confirm --walk`` finds), and claim (d) counts the studies that have one.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Any

from spotpatch._errors import UserError
from spotpatch.search import (
    DEFAULT_RULE,
    ConfirmRun,
    FrontPoint,
    TrialRecord,
    confirm_runs,
    front_points,
    full_fine_tune_map,
    parse_rule,
    select_point,
    study_meta,
    trial_records,
)
from spotpatch.spaces import PRESETS
from spotpatch.studies._select import spotpatch_studies

__all__ = [
    "MATCH_TOLERANCE",
    "TechniqueResult",
    "technique_text",
    "held_text",
    "held_header",
    "Confirmed",
    "ReportRow",
    "ReportClaims",
    "FleetReport",
    "fleet_report",
    "report_of",
    "report_markdown",
    "claim_lines",
    "confirmed",
    "delta_text",
    "mean_sd",
    "preset_runs",
    "searched_trials",
    "selected_searched",
]

#: How far below a preset's mAP a searched trial may be and still match it (mAP in [0, 1]).
MATCH_TOLERANCE = 0.005


@dataclass(frozen=True)
class TechniqueResult:
    """A patch in the table: its (first) trial, val mAP (the mean over ``runs`` runs of its
    config), bytes and bytes as a % of the full detector."""

    trial: int
    map: float
    bytes: int
    bytes_pct: float
    runs: int = 1


@dataclass(frozen=True)
class Confirmed:
    """The selected patch and the full fine-tune retrained with other seeds.

    Attributes:
        seeds: retrainings of each (the fewer of the two, when they differ).
        selected_map: the selected patch's mean val mAP over its retrainings.
        selected_sd: their standard deviation (0 for one run).
        full_map: the full fine-tune's mean val mAP.
        full_sd: its standard deviation.
        delta: ``selected_map - full_map``.
        delta_sd: the standard deviation of that difference of means.
    """

    seeds: int
    selected_map: float
    selected_sd: float
    full_map: float
    full_sd: float
    delta: float
    delta_sd: float


def mean_sd(values: Sequence[float]) -> tuple[float, float]:
    """Mean and sample standard deviation (0 for one value) of retrainings' mAPs."""
    sd = statistics.stdev(values) if len(values) > 1 else 0.0
    return statistics.fmean(values), sd


def confirmed(
    runs: Sequence[ConfirmRun], selected: Mapping[str, str], full: Mapping[str, str]
) -> Confirmed | None:
    """The retrainings of two configs (site -> kind) summed up; None unless both have some."""
    mine = [r.map for r in runs if dict(r.sites) == dict(selected)]
    theirs = [r.map for r in runs if dict(r.sites) == dict(full)]
    if not mine or not theirs:
        return None
    (mine_mean, mine_sd), (full_mean, full_sd) = mean_sd(mine), mean_sd(theirs)
    return Confirmed(
        seeds=min(len(mine), len(theirs)),
        selected_map=mine_mean,
        selected_sd=mine_sd,
        full_map=full_mean,
        full_sd=full_sd,
        delta=mine_mean - full_mean,
        delta_sd=math.sqrt(mine_sd**2 / len(mine) + full_sd**2 / len(theirs)),
    )


@dataclass(frozen=True)
class ReportRow:
    """One study's row.

    Attributes:
        study: the study (its task).
        difficulty: full fine-tune mAP minus head-only mAP (None without both).
        techniques: preset name -> its result in the study (the mean of its runs).
        selected: the searched patch the rule picks (None: no searched trial, or none fits).
        delta_vs_full: the selected patch's mAP minus the full fine-tune's (None without both):
            their mean mAPs over retrainings where ``confirmed``, single runs elsewhere.
        unmatched: the presets no searched trial matches (see :data:`MATCH_TOLERANCE`).
        note: why ``selected`` is None, when it is.
        confirmed: the retrainings of the selected patch and the full fine-tune, if any.
        held: the smallest searched patch retrained within the rule's D points of the full
            fine-tune's retrainings (``within`` and ``within-full`` rules), if any.
        held_confirmed: its retrainings against the full fine-tune's.
        retrained: how many searched configs were retrained against the full fine-tune.
    """

    study: str
    difficulty: float | None
    techniques: dict[str, TechniqueResult]
    selected: TechniqueResult | None
    delta_vs_full: float | None
    unmatched: tuple[str, ...]
    note: str | None = None
    confirmed: Confirmed | None = None
    held: TechniqueResult | None = None
    held_confirmed: Confirmed | None = None
    retrained: int = 0

    @property
    def has_presets(self) -> bool:
        return bool(self.techniques)

    @property
    def matches_presets(self) -> bool | None:
        """Whether searched trials match or beat every preset (None: the study ran none)."""
        return not self.unmatched if self.has_presets else None


@dataclass(frozen=True)
class ReportClaims:
    """The summary claims, computed from the rows.

    Attributes:
        matched: studies whose searched trials match or beat every preset.
        with_presets: studies that ran at least one preset (the denominator of ``matched``).
        mean_bytes_pct: mean bytes % of the selected patches (None: no selected patch).
        max_bytes_pct: the largest of them.
        mean_delta_vs_full: mean mAP difference of the selected patches to the full fine-tune.
        rho: Spearman's rho of difficulty against the selected patch's bytes % (None: fewer
            than 3 studies have both, or one side is constant).
        p_value: its two-sided p-value.
        correlated: the studies ``rho`` is computed on.
        notes: one line per study left out of a claim, saying why.
        tolerance: the rule's D in mAP points (``within`` and ``within-full`` rules), else
            None: claim (d) is made only with one.
        retrained: studies where searched configs and the full fine-tune were retrained.
        held: of those, the studies with a patch retrained within D of the full fine-tune.
        mean_held_pct: the mean bytes % of those patches (None: none).
    """

    matched: int
    with_presets: int
    mean_bytes_pct: float | None
    max_bytes_pct: float | None
    mean_delta_vs_full: float | None
    rho: float | None
    p_value: float | None
    correlated: tuple[str, ...]
    notes: tuple[str, ...]
    tolerance: float | None = None
    retrained: int = 0
    held: int = 0
    mean_held_pct: float | None = None


@dataclass(frozen=True)
class FleetReport:
    """The comparison across tasks (see the module docstring)."""

    rule: str
    techniques: tuple[str, ...]
    rows: tuple[ReportRow, ...]
    claims: ReportClaims

    def to_json(self) -> dict[str, Any]:
        return {
            "rule": self.rule,
            "techniques": list(self.techniques),
            "rows": [asdict(r) for r in self.rows],
            "claims": asdict(self.claims),
        }


def _result(point: FrontPoint, full_bytes: int) -> TechniqueResult:
    return TechniqueResult(
        trial=point.number,
        map=point.map,
        bytes=point.bytes,
        bytes_pct=100.0 * point.bytes / full_bytes,
        runs=point.runs,
    )


def _runs_of(record: TrialRecord, records: Sequence[TrialRecord]) -> FrontPoint:
    """A completed trial's config as a point at the mean of its completed runs in ``records``
    (numbered by the first of them)."""
    if record.sites is None:  # no config stored: the trial alone
        runs = [record]
    else:
        runs = [r for r in records if r.complete and r.sites == record.sites]
    (point,) = front_points(runs)
    return point


def _queued_as_preset(records: Sequence[TrialRecord]) -> set[int]:
    """The trials queued as presets, and the retries and repeats of those."""
    by_number = {r.number: r for r in records}
    out = set()
    for r in records:
        origin = r
        while (back := _queued_after(origin)) in by_number:
            origin = by_number[back]
        if origin.source == "preset":
            out.add(r.number)
    return out


def _queued_after(record: TrialRecord) -> int | None:
    """The trial whose config a retry or a repeat runs again, else None."""
    return {"retry": record.retry_of, "repeat": record.repeat_of}.get(record.source)


def searched_trials(records: Sequence[TrialRecord]) -> list[TrialRecord]:
    """The search's scored proposals: completed trials not queued as presets (nor retries of
    those), and the sampler's proposals of configs trained before (they hold that result)."""
    queued_as_preset = _queued_as_preset(records)
    return [
        r
        for r in records
        if (r.complete or (r.duplicate_of is not None and r.map is not None))
        and r.number not in queued_as_preset
    ]


def selected_searched(
    records: Sequence[TrialRecord], full_bytes: int, rule
) -> tuple[TrialRecord | None, str | None]:
    """The trial the rule picks among the searched ones of ``records``
    (:func:`searched_trials`), or None and why not."""
    searched = searched_trials(records)
    if not searched:
        return None, "no searched trial yet"
    points = front_points(searched)
    try:
        point = select_point(points, rule, full_bytes, full_map=full_fine_tune_map(records))
    except UserError as e:
        return None, str(e)
    return next(r for r in searched if r.number == point.number), None


def preset_runs(records: Sequence[TrialRecord]) -> dict[str, TrialRecord]:
    """Each preset's first completed trial among those queued as presets (its repeats, if
    any, follow it: :func:`~spotpatch.search.front_points` averages them)."""
    queued_as_preset = _queued_as_preset(records)
    best: dict[str, TrialRecord] = {}
    for preset in PRESETS:
        runs = [
            r
            for r in records
            if r.complete and r.preset == preset and r.number in queued_as_preset
        ]
        if runs:
            best[preset] = min(runs, key=lambda r: r.number)
    return best


def report_row(
    name: str,
    records: Sequence[TrialRecord],
    full_bytes: int,
    rule,
    runs: Sequence[ConfirmRun] = (),
) -> ReportRow:
    """One study's row, from its trial records (and its retrainings, ``runs``)."""
    presets = preset_runs(records)
    techniques = {p: _result(_runs_of(r, records), full_bytes) for p, r in presets.items()}
    searched = front_points(searched_trials(records))
    unmatched = tuple(
        preset
        for preset, t in techniques.items()
        if not any(
            p.map >= t.map - MATCH_TOLERANCE - 1e-12 and p.bytes <= t.bytes for p in searched
        )
    )
    chosen, note = selected_searched(records, full_bytes, rule)
    selected = None
    if chosen is not None:
        selected = _result(next(p for p in searched if p.number == chosen.number), full_bytes)
    head, full = techniques.get("head"), techniques.get("full")
    check = None
    held = held_check = None
    retrained = 0
    if "full" in presets:
        full_sites = presets["full"].sites or {}
        if chosen is not None:
            check = confirmed(runs, chosen.sites or {}, full_sites)
        by_number = {r.number: r for r in records}
        checks = [
            (p, confirmed(runs, by_number[p.number].sites or {}, full_sites))
            for p in sorted(searched, key=lambda p: (p.bytes, p.number))
        ]
        checks = [(p, c) for p, c in checks if c is not None]
        retrained = len(checks)
        if rule.kind in ("within", "within-full"):
            tolerance = rule.value / 100.0
            point, held_check = next(
                ((p, c) for p, c in checks if c.delta >= -tolerance - 1e-12), (None, None)
            )
            held = _result(point, full_bytes) if point is not None else None
    delta = None
    if check is not None:
        delta = check.delta
    elif selected and full:
        delta = selected.map - full.map
    return ReportRow(
        study=name,
        difficulty=full.map - head.map if head and full else None,
        techniques=techniques,
        selected=selected,
        delta_vs_full=delta,
        unmatched=unmatched,
        note=note,
        confirmed=check,
        held=held,
        held_confirmed=held_check,
        retrained=retrained,
    )


def _mean(values: Sequence[float]) -> float | None:
    return sum(values) / len(values) if values else None


def report_claims(rows: Sequence[ReportRow], rule=None) -> ReportClaims:
    """The claims (a), (b) and (c) from the rows, and (d) with a ``within`` or ``within-full``
    ``rule`` (a :class:`~spotpatch.search.SelectionRule`)."""
    notes = []
    with_presets = [r for r in rows if r.has_presets]
    notes += [f"{r.study}: no preset was run; left out of (a)" for r in rows if not r.has_presets]
    chosen = [r for r in rows if r.selected is not None]
    notes += [f"{r.study}: no selected patch ({r.note}); left out of (b) and (c)" for r in rows
              if r.selected is None]  # fmt: skip
    pairs = [r for r in chosen if r.difficulty is not None]
    notes += [
        f"{r.study}: no head-only and full fine-tune pair to measure difficulty; left out of (c)"
        for r in chosen
        if r.difficulty is None
    ]
    rho = p_value = None
    if len(pairs) >= 3:
        from scipy.stats import spearmanr

        result = spearmanr([r.difficulty for r in pairs], [r.selected.bytes_pct for r in pairs])
        if math.isfinite(result.statistic):
            rho, p_value = float(result.statistic), float(result.pvalue)
    held = [r.held.bytes_pct for r in rows if r.held is not None]
    deltas = [r.delta_vs_full for r in chosen if r.delta_vs_full is not None]
    sizes = [r.selected.bytes_pct for r in chosen]
    return ReportClaims(
        matched=sum(bool(r.matches_presets) for r in with_presets),
        with_presets=len(with_presets),
        mean_bytes_pct=_mean(sizes),
        max_bytes_pct=max(sizes) if sizes else None,
        mean_delta_vs_full=_mean(deltas),
        rho=rho,
        p_value=p_value,
        correlated=tuple(r.study for r in pairs),
        notes=tuple(notes),
        tolerance=rule.value
        if rule is not None and rule.kind in ("within", "within-full")
        else None,
        retrained=sum(r.retrained > 0 for r in rows),
        held=len(held),
        mean_held_pct=_mean(held),
    )


def report_of(studies: Sequence, rule: str = DEFAULT_RULE) -> FleetReport:
    """The report of some studies (Optuna studies made by spotpatch)."""
    parsed = parse_rule(rule)
    rows = [
        report_row(
            s.study_name, trial_records(s), study_meta(s).full_bytes, parsed, confirm_runs(s)
        )
        for s in studies
    ]
    # Easiest first; studies without a difficulty last, by name.
    rows.sort(key=lambda r: (r.difficulty is None, r.difficulty or 0.0, r.study))
    used = {name for r in rows for name in r.techniques}
    return FleetReport(
        rule=str(parsed),
        techniques=tuple(p for p in PRESETS if p in used),
        rows=tuple(rows),
        claims=report_claims(rows, parsed),
    )


def fleet_report(storage, rule: str = DEFAULT_RULE) -> FleetReport:
    """The report of every spotpatch study in a storage.

    Raises:
        UserError: a bad rule, or no spotpatch study in the storage.
    """
    studies = spotpatch_studies(storage)
    if not studies:
        raise UserError("no spotpatch study in this storage: run one with `spotpatch run`")
    return report_of(studies, rule)


# -- as text -----------------------------------------------------------------------------------
def technique_text(t: TechniqueResult | None) -> str:
    """A technique's cell: ``0.712 (22.0 %)``, with ``, mean of 2 runs`` for a config run
    again with other seeds."""
    if t is None:
        return "-"
    runs = f", mean of {t.runs} runs" if t.runs > 1 else ""
    return f"{t.map:.3f} ({t.bytes_pct:.1f} %{runs})"


def _number(value: float | None, fmt: str) -> str:
    return "-" if value is None else format(value, fmt)


def delta_text(row: ReportRow) -> str:
    """The Δ vs full cell: ``+0.3`` for single runs, ``+0.3 ± 0.4 (3 seeds)`` where confirmed."""
    if row.delta_vs_full is None:
        return "-"
    text = f"{100 * row.delta_vs_full:+.1f}"
    if row.confirmed is not None:
        c = row.confirmed
        text += f" ± {100 * c.delta_sd:.1f} ({c.seeds} seed{'s' if c.seeds > 1 else ''})"
    return text


def held_header(c: ReportClaims) -> str | None:
    """The header of the held column, or None when the report has none (no distance in the
    rule, or nothing retrained)."""
    if c.tolerance is None or not c.retrained:
        return None
    return f"smallest retrained within {c.tolerance:g} of full"


def held_text(row: ReportRow) -> str:
    """The held cell: ``22.0 % (-1.0 ± 0.4, 3 seeds)``, ``none of 2 retrained`` where searched
    patches were retrained and none held, ``-`` where none was."""
    c = row.held_confirmed
    if row.held is not None and c is not None:
        return (
            f"{row.held.bytes_pct:.1f} % ({100 * c.delta:+.1f} ± {100 * c.delta_sd:.1f}, "
            f"{c.seeds} seed{'s' if c.seeds > 1 else ''})"
        )
    return f"none of {row.retrained} retrained" if row.retrained else "-"


def claim_lines(c: ReportClaims) -> tuple[str, ...]:
    """The claims (a), (b) and (c) in words, with their numbers, and (d) where the rule has a
    distance and some study was retrained (``spotpatch confirm``)."""
    delta = None if c.mean_delta_vs_full is None else 100 * c.mean_delta_vs_full
    if c.rho is None:
        rho = "not computed (it needs 3 studies with both, and neither side constant)"
    else:
        rho = f"{c.rho:.2f} (p = {c.p_value:.3g}, over {len(c.correlated)} studies)"
    lines = (
        f"(a) The searched trials match or beat every preset in {c.matched} of "
        f"{c.with_presets} studies that ran presets (a searched trial matches a preset with "
        f"no more bytes and an mAP at most {MATCH_TOLERANCE} below).",
        f"(b) The selected patches take {_number(c.mean_bytes_pct, '.1f')} % of the full "
        f"detector's bytes on average, {_number(c.max_bytes_pct, '.1f')} % at most; their mAP "
        f"is {_number(delta, '+.1f')} points from the full fine-tune's on average.",
        f"(c) Spearman's ρ of difficulty against the selected patch's bytes: {rho}.",
    )
    if c.tolerance is None or not c.retrained:
        return lines
    held = (
        f"; they take {c.mean_held_pct:.1f} % of the full detector's bytes on average"
        if c.held
        else ""
    )
    return (
        *lines,
        f"(d) Retrained with other seeds (`spotpatch confirm`): in {c.held} of {c.retrained} "
        f"studies a searched patch comes within {c.tolerance:g} points of the full fine-tune's "
        f"mean mAP (the smallest such patch per study){held}.",
    )


def report_markdown(report: FleetReport) -> str:
    """The report as Markdown: the table (val mAP and bytes % of the full detector per
    technique, the selected searched patch and its difference to the full fine-tune), then the
    claims."""
    held = held_header(report.claims)
    head = ["study", "difficulty", *report.techniques, f"searched ({report.rule})", "Δ vs full"]
    head += [held] if held else []
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in report.rows:
        cells = [
            r.study,
            _number(r.difficulty, ".3f"),
            *(technique_text(r.techniques.get(t)) for t in report.techniques),
            technique_text(r.selected),
            delta_text(r),
            *([held_text(r)] if held else []),
        ]
        lines.append("| " + " | ".join(cells) + " |")
    c = report.claims
    lines += ["", "Cells: val mAP (patch bytes as a % of the full detector); Δ in mAP points."]
    confirmed = [r.study for r in report.rows if r.confirmed is not None]
    if confirmed:
        lines.append(
            f"Δ is the difference of mean mAPs over retrainings with other seeds (`spotpatch "
            f"confirm`) in {len(confirmed)} of {len(report.rows)} studies (± its standard "
            "deviation), of single runs elsewhere."
        )
    if held:
        lines.append(
            "The last column: the smallest searched patch whose retrainings' mean comes within "
            "that distance of the full fine-tune's retrainings (Δ ± its standard deviation), "
            "among those `spotpatch confirm` (with `--walk`: as many as it takes) retrained."
        )
    lines.append("")
    lines += [f"- {line}" for line in claim_lines(c)]
    lines += [f"- {note}" for note in c.notes]
    return "\n".join(lines) + "\n"
