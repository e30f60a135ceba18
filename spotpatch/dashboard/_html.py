"""The dashboard page: the sections of :class:`DashboardData`, as one self-contained HTML file
(plotly.js inlined once) that opens offline.

What spans the studies (the fleet, the report across tasks, search progress, placement) is
drawn at load; each study's own view is one ``section.task``, chosen from a list (or by the
address, ``#task=NAME``) and drawn when first shown, so the page stays light with many studies.

The page is made and written by ``_page``, whose docstring holds the escaping policy: every
string from a study goes through ``_e`` (``page_text``) here, and through ``plot_text`` in the
figures.
"""

from __future__ import annotations

from pathlib import Path
from urllib.parse import quote

from spotpatch._files import write_text
from spotpatch._format import kib
from spotpatch.dashboard._data import DashboardData, StudyPanel, dashboard_data
from spotpatch.dashboard._figures import (
    hypervolume_figure,
    placement_figure,
    relaxation_figure,
    scatter_figure,
    site_bytes_figure,
)
from spotpatch.dashboard._fleet_figures import fleet_figure
from spotpatch.dashboard._page import PageFigures, html_document
from spotpatch.dashboard._page import page_text as _e
from spotpatch.dashboard._report_page import across_section

__all__ = ["render_dashboard", "write_dashboard", "task_link"]


#: Up to this many tasks, the fleet's table is open; beyond, folded.
_OPEN_ROWS = 12


def task_link(name: str) -> str:
    """The address of a study's view on the page (``#task=NAME``, percent-encoded)."""
    return "#task=" + quote(name, safe="")


def _fleet_section(data: DashboardData, page: PageFigures) -> str:
    fleet = data.fleet
    parts = ["<section><h2>Fleet</h2>"]
    if fleet.tasks:
        saving = f" ({fleet.saving:,.1f}x smaller)" if fleet.saving else ""
        parts.append(
            f"<p>{len(fleet.tasks)} patches take <b>{fleet.total_patch_bytes:,}</b> "
            f"bytes ({kib(fleet.total_patch_bytes)}) against <b>{fleet.total_full_bytes:,}</b> "
            f"bytes for one full detector per task{saving}; the patches also need the one "
            "shared base.</p>"
        )
    if fleet.missing:
        parts.append(f'<p class="note">No patch for: {_e(", ".join(fleet.missing))}.</p>')
    parts.append(page.figure(fleet_figure(fleet)))
    rows = "".join(
        f'<tr><td><a href="{_e(task_link(t))}">{_e(t)}</a></td><td>{n}</td><td>{m:.3f}</td>'
        f"<td>{p:,}</td><td>{f:,}</td><td>{f / p if p else 0:,.1f}x</td></tr>"
        for t, n, m, p, f in zip(
            fleet.tasks,
            fleet.trials,
            fleet.maps,
            fleet.patch_bytes,
            fleet.full_bytes,
            strict=True,
        )
    )
    if rows:
        # A long table is folded: the figure above says the same at a glance.
        shown = " open" if len(fleet.tasks) <= _OPEN_ROWS else ""
        parts.append(
            f"<details{shown}><summary>Each task's patch ({len(fleet.tasks)} tasks)</summary>"
            "<table><tr><th>task</th><th>trial</th><th>mAP</th><th>patch bytes</th>"
            f"<th>full bytes</th><th>smaller by</th></tr>{rows}</table></details>"
        )
    parts.append("</section>")
    return "".join(parts)


def _study_section(panel: StudyPanel, rule: str, page: PageFigures, *, shown: bool) -> str:
    meta, scatter = panel.meta, panel.scatter
    classes = ", ".join(meta.classes)
    parts = [
        f'<section class="task" data-task="{_e(panel.name)}"{"" if shown else " hidden"}>',
        f"<h2>{_e(panel.name)}</h2>",
        f'<p class="meta">model {_e(meta.model)} · classes: {_e(classes)} · granularity '
        f"{_e(meta.granularity)} · kinds {_e(', '.join(meta.kinds))} · sampler "
        f"{_e(meta.sampler)} · warm start {_e(meta.warm_start)} · {panel.done} completed, "
        f"{len(scatter.failed)} failed · full patch {meta.full_bytes:,} bytes</p>",
        page.deferred(scatter_figure(scatter)),
    ]
    if scatter.selected is None:
        parts.append(f'<p class="note">No {_e(rule)}: {_e(scatter.selection_note)}</p>')
    elif panel.site_bytes.note:
        parts.append(
            f'<p class="note">Trial {scatter.selected} is the {_e(rule)}; bytes per site not '
            f"shown: {_e(panel.site_bytes.note)}</p>"
        )
    else:
        parts.append(page.deferred(site_bytes_figure(panel.site_bytes)))
    if scatter.failed:
        items = "".join(f"<li>trial {n}: <pre>{_e(err)}</pre></li>" for n, err in scatter.failed)
        parts.append(
            f"<details><summary>{len(scatter.failed)} failed trials</summary><ul>{items}</ul>"
            "</details>"
        )
    parts.append("</section>")
    return "".join(parts)


def _task_list(data: DashboardData) -> str:
    """The list each study's view is chosen from."""
    options = "".join(
        f'<option value="{_e(p.name)}">{_e(p.name)} ({p.done} trials)</option>'
        for p in data.studies
    )
    return (
        '<section id="tasks"><h2>Per task</h2>'
        f'<p><label for="task-select">Task</label> <select id="task-select">{options}</select>'
        f' <span class="meta">{len(data.studies)} studies; each view has its own address '
        "(#task=NAME).</span></p></section>"
    )


def render_dashboard(data: DashboardData, *, note: str = "") -> str:
    """The page for ``data`` as one HTML string (plotly.js included)."""
    page = PageFigures()
    body = [
        "<header><h1>spotpatch dashboard</h1>",
        f'<p class="meta">storage {_e(data.storage)} · each study\'s {_e(data.rule)} · '
        f"{len(data.studies)} studies · generated {_e(data.generated)}"
        f"{' · ' + _e(note) if note else ''} · "
        '<a href="#tasks">each task\'s view</a></p></header>',
        _fleet_section(data, page),
        across_section(data.across, page),
        "<section><h2>Search progress</h2>",
        page.figure(hypervolume_figure(data.hypervolume)),
        "</section><section><h2>Placement</h2>",
        page.figure(placement_figure(data.placement)),
    ]
    relaxation = relaxation_figure(data.placement)
    body.append(
        page.figure(relaxation)
        if relaxation is not None
        else '<p class="meta">No study recorded a warm start (gate relaxation).</p>'
    )
    body.append("</section>")
    body.append(_task_list(data))
    body += [_study_section(p, data.rule, page, shown=i == 0) for i, p in enumerate(data.studies)]
    return html_document("spotpatch dashboard", body, page)


def write_dashboard(storage, out_path: str | Path, *, rule: str | None = None) -> Path:
    """Write the dashboard of every spotpatch study in ``storage`` to one HTML file, beside it
    first and then renamed over it (a browser reloading never sees half a page).

    Args:
        storage: an Optuna storage, or its URL.
        out_path: the ``.html`` file to write (its folder must exist).
        rule: None for each study's answer, else the selection rule that picks each study's
            patch (see ``spotpatch export``).

    Returns:
        The path written.

    Raises:
        UserError: a bad rule, no spotpatch study, or a file that cannot be written.

    Example:
        >>> write_dashboard("sqlite:///spotpatch.db", "dashboard.html")  # doctest: +SKIP
        PosixPath('dashboard.html')
    """
    from spotpatch.studies import open_storage

    if isinstance(storage, str):
        storage = open_storage(storage, existing=True)
    return write_text(out_path, render_dashboard(dashboard_data(storage, rule)))
