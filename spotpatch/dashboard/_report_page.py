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
from spotpatch.dashboard._across import AcrossTasks, across_tasks
from spotpatch.dashboard._fleet_figures import difficulty_figure
from spotpatch.dashboard._page import PageFigures, html_document
from spotpatch.dashboard._page import page_text as _e
from spotpatch.studies import Cell, FleetReport

__all__ = ["across_section", "render_report_html", "write_report_html"]


def _cell(cell: Cell) -> str:
    hover = f' title="{_e(cell.hover)}"' if cell.hover else ""
    return f"<td{hover}>{_e(cell.text)}</td>"


def _table(data: AcrossTasks) -> str:
    header = "".join(f"<th>{_e(h)}</th>" for h in data.header)
    rows = "".join("<tr>" + "".join(_cell(c) for c in row) + "</tr>" for row in data.rows)
    return f"<table><tr>{header}</tr>{rows}</table>"


def across_section(data: AcrossTasks, page: PageFigures) -> str:
    """The "Across tasks" section: the table by difficulty, what its cells mean, the claims,
    their notes and the difficulty scatter (its figure collected by ``page``)."""
    parts = [
        '<section id="across-tasks"><h2>Across tasks</h2>',
        '<p class="meta">One row per study, easiest first (difficulty: the full fine-tune\'s '
        "mAP minus the head-only one).</p>",
        _table(data),
        '<ul class="meta">' + "".join(f"<li>{_e(f)}</li>" for f in data.footnotes) + "</ul>",
        '<ul class="claims">' + "".join(f"<li>{_e(c)}</li>" for c in data.claims) + "</ul>",
    ]
    if data.notes:
        items = "".join(f"<li>{_e(n)}</li>" for n in data.notes)
        parts.append(f'<ul class="note">{items}</ul>')
    figure = page.figure(difficulty_figure(data))
    parts.append(
        figure or '<p class="meta">No study has both a difficulty and an answer to plot.</p>'
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
        f'<p class="meta">each study\'s {_e(data.rule)} · {len(data.rows)} studies · '
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
