"""The dashboard page: one self-contained HTML file (plotly.js inlined once) that opens offline.

Every string from a study is escaped: ``html.escape`` in the page's text, and the figures' JSON
sits in ``<script type="application/json">`` blocks with ``<``, ``>`` and ``&`` written as
``\\u003c``... so no study name can close the block or open a tag. The page marks on ``<body>``
how many plots it drew (``data-plots-drawn`` against ``data-plots-expected``) and any script
error (``data-js-errors``), which the browser test reads.
"""

from __future__ import annotations

import html
from pathlib import Path

from spotpatch._errors import UserError
from spotpatch.dashboard._data import DashboardData, StudyPanel, dashboard_data
from spotpatch.dashboard._figures import (
    fleet_figure,
    hypervolume_figure,
    placement_figure,
    relaxation_figure,
    scatter_figure,
    site_bytes_figure,
)
from spotpatch.search import DEFAULT_RULE

__all__ = ["render_dashboard", "write_dashboard", "script_json"]

_STYLE = """
body { font-family: system-ui, sans-serif; margin: 0 2rem 3rem; color: #222; }
header { border-bottom: 1px solid #ddd; margin-bottom: 1rem; }
h2 { margin-top: 2.5rem; border-bottom: 1px solid #eee; }
.meta { color: #555; font-size: 0.9rem; }
.note { color: #8a6d3b; }
.plot { width: 100%; min-height: 200px; }
table { border-collapse: collapse; font-size: 0.9rem; }
td, th { padding: 0.2rem 0.6rem; border-bottom: 1px solid #eee; text-align: right; }
td:first-child, th:first-child { text-align: left; }
pre { white-space: pre-wrap; font-size: 0.8rem; background: #f7f7f7; padding: 0.4rem; }
#js-errors { color: #b00; font-weight: bold; }
"""

# Before plotly.js, so an error anywhere (plotly.js included) is caught and shown.
_CATCH_ERRORS = """
window.spotpatchReport = function (what) {
  var text = String(what && what.message ? what.message : what);
  var errors = (document.body.dataset.jsErrors ? [document.body.dataset.jsErrors] : []);
  errors.push(text);
  document.body.dataset.jsErrors = errors.join(" | ");
  var box = document.getElementById("js-errors");
  if (box) { box.hidden = false; box.textContent = "Errors while drawing: " + errors.join(" | "); }
};
window.addEventListener("error", function (e) { window.spotpatchReport(e.message || e); });
window.addEventListener("unhandledrejection", function (e) { window.spotpatchReport(e.reason); });
(function () {
  var original = console.error;
  console.error = function () {
    window.spotpatchReport(Array.prototype.join.call(arguments, " "));
    original.apply(console, arguments);
  };
})();
"""

_DRAW = """
(function () {
  var drawing = [];
  document.querySelectorAll("script.plot-data").forEach(function (node) {
    try {
      var fig = JSON.parse(node.textContent);
      drawing.push(Plotly.newPlot(node.dataset.target, fig.data, fig.layout,
                                  {responsive: true, displaylogo: false}));
    } catch (e) { window.spotpatchReport(e); }
  });
  Promise.all(drawing).then(function () {
    var drawn = Array.prototype.filter.call(
      document.querySelectorAll(".js-plotly-plot"),
      function (div) { return div.querySelector("svg.main-svg") !== null; }).length;
    document.body.dataset.drawMs = String(Math.round(performance.now()));
    document.body.dataset.plotsDrawn = String(drawn);
  }, window.spotpatchReport);
})();
"""


def script_json(text: str) -> str:
    """JSON made safe inside a ``<script>`` block: no ``<``, ``>`` or ``&`` left raw."""
    return (
        text.replace("&", "\\u0026")
        .replace("<", "\\u003c")
        .replace(">", "\\u003e")
        .replace("\u2028", "\\u2028")
        .replace("\u2029", "\\u2029")
    )


def _e(value: object) -> str:
    return html.escape(str(value))


def _kib(n: int) -> str:
    return f"{n / 1024:,.1f} KiB"


class _Page:
    """Collects figures into placeholders and their JSON blocks, in page order."""

    def __init__(self) -> None:
        self.blocks: list[str] = []
        self.count = 0

    def figure(self, fig) -> str:
        if fig is None:
            return ""
        target = f"plot-{self.count}"
        self.count += 1
        self.blocks.append(
            f'<script type="application/json" class="plot-data" data-target="{target}">'
            f"{script_json(fig.to_json())}</script>"
        )
        return f'<div class="plot" id="{target}"></div>'


def _fleet_section(data: DashboardData, page: _Page) -> str:
    fleet = data.fleet
    parts = ["<section><h2>Fleet</h2>"]
    if fleet.tasks:
        saving = f" ({fleet.saving:,.1f}x smaller)" if fleet.saving else ""
        parts.append(
            f"<p>{len(fleet.tasks)} selected patches take <b>{fleet.total_patch_bytes:,}</b> "
            f"bytes ({_kib(fleet.total_patch_bytes)}) against <b>{fleet.total_full_bytes:,}</b> "
            f"bytes for one full detector per task{saving}; the patches also need the one "
            "shared base.</p>"
        )
    if fleet.missing:
        parts.append(f'<p class="note">No patch selected for: {_e(", ".join(fleet.missing))}.</p>')
    parts.append(page.figure(fleet_figure(fleet)))
    rows = "".join(
        f"<tr><td>{_e(t)}</td><td>{n}</td><td>{m:.3f}</td><td>{p:,}</td><td>{f:,}</td>"
        f"<td>{f / p if p else 0:,.1f}x</td></tr>"
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
        parts.append(
            "<table><tr><th>task</th><th>trial</th><th>mAP</th><th>patch bytes</th>"
            f"<th>full bytes</th><th>smaller by</th></tr>{rows}</table>"
        )
    parts.append("</section>")
    return "".join(parts)


def _study_section(panel: StudyPanel, rule: str, page: _Page) -> str:
    meta, scatter = panel.meta, panel.scatter
    classes = ", ".join(meta.classes)
    parts = [
        f"<section><h2>{_e(panel.name)}</h2>",
        f'<p class="meta">model {_e(meta.model)} · classes: {_e(classes)} · granularity '
        f"{_e(meta.granularity)} · kinds {_e(', '.join(meta.kinds))} · sampler "
        f"{_e(meta.sampler)} · warm start {_e(meta.warm_start)} · {panel.done} completed, "
        f"{len(scatter.failed)} failed · full patch {meta.full_bytes:,} bytes</p>",
        page.figure(scatter_figure(scatter)),
    ]
    if scatter.selected is None:
        parts.append(
            f'<p class="note">No trial selected by {_e(rule)}: {_e(scatter.selection_note)}</p>'
        )
    elif panel.site_bytes.note:
        parts.append(
            f'<p class="note">Trial {scatter.selected} is selected; bytes per site not shown: '
            f"{_e(panel.site_bytes.note)}</p>"
        )
    else:
        parts.append(page.figure(site_bytes_figure(panel.site_bytes)))
    if scatter.failed:
        items = "".join(f"<li>trial {n}: <pre>{_e(err)}</pre></li>" for n, err in scatter.failed)
        parts.append(
            f"<details><summary>{len(scatter.failed)} failed trials</summary><ul>{items}</ul>"
            "</details>"
        )
    parts.append("</section>")
    return "".join(parts)


def render_dashboard(data: DashboardData, *, note: str = "") -> str:
    """The page for ``data`` as one HTML string (plotly.js included)."""
    from plotly.offline import get_plotlyjs

    page = _Page()
    body = [
        "<header><h1>spotpatch dashboard</h1>",
        f'<p class="meta">storage {_e(data.storage)} · selection rule {_e(data.rule)} · '
        f"{len(data.studies)} studies · generated {_e(data.generated)}"
        f"{' · ' + _e(note) if note else ''}</p></header>",
        '<p id="js-errors" hidden></p>',
        _fleet_section(data, page),
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
    body += [_study_section(p, data.rule, page) for p in data.studies]
    # plotly.js holds no "</script" today; never let a future release end the block early.
    plotly_js = get_plotlyjs().replace("</script", "<\\/script")
    return "\n".join(
        [
            "<!DOCTYPE html>",
            '<html lang="en"><head><meta charset="utf-8">',
            '<meta name="viewport" content="width=device-width, initial-scale=1">',
            "<title>spotpatch dashboard</title>",
            f"<style>{_STYLE}</style>",
            f"<script>{_CATCH_ERRORS}</script>",
            f"<script>{plotly_js}</script>",
            "</head>",
            f'<body data-plots-expected="{page.count}">',
            *body,
            *page.blocks,
            f"<script>{_DRAW}</script>",
            "</body></html>",
        ]
    )


def write_dashboard(storage, out_path: str | Path, *, rule: str = DEFAULT_RULE) -> Path:
    """Write the dashboard of every spotpatch study in ``storage`` to one HTML file.

    Args:
        storage: an Optuna storage, or its URL.
        out_path: the ``.html`` file to write (its folder must exist).
        rule: the selection rule that picks each study's patch (see ``spotpatch export``).

    Returns:
        The path written.

    Raises:
        UserError: a bad rule, no spotpatch study, or a file that cannot be written.

    Example:
        >>> write_dashboard("sqlite:///spotpatch.db", "dashboard.html")  # doctest: +SKIP
        PosixPath('dashboard.html')
    """
    from spotpatch.studies import open_storage

    out = Path(out_path)
    if out.is_dir():
        raise UserError(f"--out is a folder, not a file: {out}")
    if not out.parent.is_dir():
        raise UserError(f"folder not found for --out: {out.parent}")
    if isinstance(storage, str):
        storage = open_storage(storage, existing=True)
    text = render_dashboard(dashboard_data(storage, rule))
    try:
        out.write_text(text, encoding="utf-8")
    except OSError as e:
        raise UserError(f"cannot write {out}: {e.strerror or e}") from None
    return out
