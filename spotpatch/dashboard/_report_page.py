"""The report across tasks as HTML: the dashboard's "Across tasks" section, and a page of its
own (``spotpatch report --out FILE.html``) that holds just that section.

Both are drawn from :class:`~spotpatch.dashboard._across.AcrossTasks`; the page is made by
``_page``, under its escaping policy (study names and notes are user text), and written by
``_files.write_text`` (beside the file, then renamed over it).
"""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

from spotpatch._files import write_text
from spotpatch.dashboard._across import AcrossTasks, across_tasks, number_text
from spotpatch.dashboard._fleet_figures import difficulty_figure
from spotpatch.dashboard._page import PageFigures, html_document
from spotpatch.dashboard._page import page_text as _e
from spotpatch.studies import FleetReport, TechniqueResult, technique_text

__all__ = ["across_section", "render_report_html", "write_report_html"]


def _cell(t: TechniqueResult | None) -> str:
    if t is None:
        return "<td>-</td>"
    hover = f"trial {t.trial}, {t.bytes:,} bytes"
    return f'<td title="{_e(hover)}">{_e(technique_text(t))}</td>'


def _table(data: AcrossTasks) -> str:
    head = [
        "study",
        "difficulty",
        *data.techniques,
        f"searched ({data.rule})",
        "Δ mAP vs full (points)",
        *([data.held_header] if data.held_header else []),
    ]
    held = (lambda r: f"<td>{_e(r.held)}</td>") if data.held_header else (lambda r: "")
    rows = "".join(
        f"<tr><td>{_e(r.study)}</td><td>{number_text(r.difficulty, '.3f')}</td>"
        + "".join(_cell(t) for t in r.techniques)
        + f"{_cell(r.selected)}<td>{_e(r.delta)}</td>{held(r)}</tr>"
        for r in data.rows
    )
    header = "".join(f"<th>{_e(h)}</th>" for h in head)
    return f"<table><tr>{header}</tr>{rows}</table>"


def across_section(data: AcrossTasks, page: PageFigures) -> str:
    """The "Across tasks" section: the table by difficulty, the claims, their notes and the
    difficulty scatter (its figure collected by ``page``)."""
    parts = [
        '<section id="across-tasks"><h2>Across tasks</h2>',
        '<p class="meta">One row per study, easiest first (difficulty: the full fine-tune\'s '
        "mAP minus the head-only one). Cells: val mAP (patch bytes as a % of the full "
        f"detector); searched: the patch {_e(data.rule)} selects among the searched trials "
        "(presets left out); Δ: its mAP minus the full fine-tune's.</p>",
        _table(data),
        '<ul class="claims">' + "".join(f"<li>{_e(c)}</li>" for c in data.claims) + "</ul>",
    ]
    if data.notes:
        items = "".join(f"<li>{_e(n)}</li>" for n in data.notes)
        parts.append(f'<ul class="note">{items}</ul>')
    figure = page.figure(difficulty_figure(data))
    parts.append(
        figure
        or '<p class="meta">No study has both a difficulty and a selected patch to plot.</p>'
    )
    parts.append("</section>")
    return "".join(parts)


def render_report_html(report: FleetReport) -> str:
    """The page of ``report``: just the "Across tasks" section, as one HTML string (plotly.js
    included)."""
    page = PageFigures()
    data = across_tasks(report)
    generated = datetime.now(UTC).strftime("%Y-%m-%d %H:%M:%S UTC")
    body = [
        "<header><h1>spotpatch report across tasks</h1>",
        f'<p class="meta">selection rule {_e(data.rule)} · {len(data.rows)} studies · '
        f"generated {_e(generated)}</p></header>",
        across_section(data, page),
    ]
    return html_document("spotpatch report across tasks", body, page)


def write_report_html(report: FleetReport, path: str | Path) -> Path:
    """Write ``report`` as a self-contained HTML page that opens offline (plotly.js inlined),
    beside ``path`` first and then renamed over it.

    Args:
        report: the report (see :func:`spotpatch.studies.fleet_report`).
        path: the ``.html`` file to write (its folder must exist).

    Returns:
        The path written.

    Raises:
        UserError: ``path`` is a folder, its folder is missing, or it cannot be written.

    Example:
        >>> report = fleet_report("sqlite:///spotpatch.db")  # doctest: +SKIP
        >>> write_report_html(report, "report.html")  # doctest: +SKIP
        PosixPath('report.html')
    """
    return write_text(path, render_report_html(report))
