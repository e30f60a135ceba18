"""The report's words: its table as cells, its claims as sentences, its notes.

One renderer for every place the report shows: ``spotpatch report`` (Markdown), its HTML page
and the dashboard's "Across tasks" section all lay out :func:`report_table`'s cells and
:func:`claim_lines`' sentences; only the markup differs.
"""

from __future__ import annotations

from dataclasses import dataclass

from spotpatch._format import MISSING, number_text
from spotpatch.search import to_points
from spotpatch.studies._report import FleetReport, ReportClaims, ReportRow, TechniqueResult

__all__ = [
    "Cell",
    "MISSING",
    "claim_lines",
    "delta_text",
    "number_text",
    "report_footnotes",
    "report_markdown",
    "report_table",
    "technique_text",
]


@dataclass(frozen=True)
class Cell:
    """A table cell: its text and, where there is more to say, a hover text."""

    text: str
    hover: str | None = None


def technique_text(t: TechniqueResult | None) -> str:
    """A patch's cell: ``0.712 (22.0 %)``, with ``, mean of 2 runs`` for a config run again
    with other seeds."""
    if t is None:
        return MISSING
    runs = f", mean of {t.runs} runs" if t.runs > 1 else ""
    return f"{t.map:.3f} ({t.bytes_pct:.1f} %{runs})"


def _technique(t: TechniqueResult | None) -> Cell:
    hover = None if t is None else f"trial {t.trial}, {t.bytes:,} bytes"
    return Cell(technique_text(t), hover)


def _answer(row: ReportRow) -> Cell:
    if row.answer is None:
        return Cell(MISSING, row.note)
    text = technique_text(row.answer)
    if row.answer.preset is not None:
        text += f", preset {row.answer.preset}"
    return Cell(text, f"trial {row.answer.trial}, {row.answer.bytes:,} bytes")


def delta_text(row: ReportRow) -> str:
    """The Δ vs full cell, in mAP points: ``−0.4 ± 0.3 (3 paired seeds): holds`` where the
    answer was measured on fresh seeds (``none smaller held (N walked): the full fine-tune``
    where the walk reached it), ``+0.3 (search)`` from the search's means elsewhere."""
    if row.delta_vs_full is None:
        return MISSING
    if row.confirmed is None:
        return f"{to_points(row.delta_vs_full):+.1f} (search)"
    return row.said or MISSING


def _delta(row: ReportRow) -> Cell:
    hover = None
    if row.confirmed is not None:
        c = row.confirmed
        hover = (
            f"{c.map:.3f} ± {c.map_sd:.3f} against the full fine-tune's {c.full_map:.3f} ± "
            f"{c.full_sd:.3f}; 90 % interval of Δ {to_points(c.low):+.1f} to "
            f"{to_points(c.high):+.1f} points"
        )
    elif row.state is not None:
        hover = f"confirmation {row.state}"
    return Cell(delta_text(row), hover)


def _within(row: ReportRow) -> Cell:
    searched = MISSING if row.searched is None else f"{row.searched.bytes_pct:.1f} %"
    if row.preset_within is None:
        preset = "none"
    else:
        preset = f"{row.preset_within} {row.techniques[row.preset_within].bytes_pct:.1f} %"
    return Cell(f"{searched} / {preset}")


def report_table(report: FleetReport) -> tuple[list[str], list[list[Cell]]]:
    """The table's header and its rows of cells, one row per study in the report's order."""
    picked = "answer" if report.rule == "answer" else f"pick ({report.rule})"
    header = [
        "study",
        "difficulty",
        *report.techniques,
        picked,
        "Δ vs full",
        "smallest within tolerance: searched / preset",
    ]
    rows = [
        [
            Cell(r.study),
            Cell(number_text(r.difficulty, ".3f")),
            *(_technique(r.techniques.get(t)) for t in report.techniques),
            _answer(r),
            _delta(r),
            _within(r),
        ]
        for r in report.rows
    ]
    return header, rows


def report_footnotes(report: FleetReport) -> tuple[str, ...]:
    """What the table's cells mean."""
    tolerances = sorted({r.tolerance for r in report.rows})
    within = ", ".join(f"{t:g}" for t in tolerances) or MISSING
    points = "point" if tolerances == [1.0] else "points"
    lines = [
        "Cells: val mAP (patch bytes as a % of the full detector), the mean of a config's runs "
        "in the search; Δ in mAP points.",
        f"The answer: the smallest patch (searched or preset) within the study's tolerance "
        f"({within} {points}) of the full fine-tune's mean, as confirmed on its deciding seeds "
        "where the study confirmed it.",
        "Δ: the mean paired difference to the full fine-tune on fresh seeds, which chose "
        "nothing (± its standard error), where the answer was confirmed (scored on val and "
        "test together where the task has a test split); the search's means elsewhere.",
    ]
    return tuple(lines)


def claim_lines(c: ReportClaims) -> tuple[str, ...]:
    """The claims (a) to (d) in words, with their numbers."""
    delta = None if c.mean_delta_vs_full is None else to_points(c.mean_delta_vs_full)
    if c.rho is None:
        rho = "not computed (it needs 3 studies with both, and neither side constant)"
    else:
        rho = f"{c.rho:.2f} (p = {c.p_value:.3g}, over {len(c.correlated)} studies)"
    held = (
        f"; they take {c.mean_held_pct:.1f} % of the full detector's bytes on average"
        if c.held
        else ""
    )
    if c.walked_out:
        held = f" ({c.walked_out} of them the full fine-tune: no smaller patch held){held}"
    return (
        f"(a) At the task's accuracy, the search's smallest patch is no larger than the "
        f"smallest preset's in {c.search_wins} of {c.compared} studies (both within the "
        "study's tolerance of the full fine-tune).",
        f"(b) The patches take {number_text(c.mean_bytes_pct, '.1f')} % of the full "
        f"detector's bytes on average, {number_text(c.max_bytes_pct, '.1f')} % at most; their "
        f"mAP is {number_text(delta, '+.1f')} points from the full fine-tune's on average.",
        f"(c) Spearman's ρ of difficulty against the patch's bytes: {rho}.",
        f"(d) Measured on fresh seeds in {c.confirmed} studies, the patch holds within the "
        f"tolerance in {c.held}{held}.",
    )


def report_markdown(report: FleetReport) -> str:
    """The report as Markdown: the table, what its cells mean, then the claims and notes."""
    header, rows = report_table(report)
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(c.text for c in row) + " |" for row in rows]
    lines += ["", *report_footnotes(report), ""]
    lines += [f"- {line}" for line in claim_lines(report.claims)]
    lines += [f"- {note}" for note in report.claims.notes]
    return "\n".join(lines) + "\n"
