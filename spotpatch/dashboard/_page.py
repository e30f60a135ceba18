"""What every spotpatch page is made of: one self-contained HTML file (plotly.js inlined once)
that opens offline, written crash-safely by ``_files.write_text``. The dashboard (``_html``) and
the report across tasks (``_report_page``) are both such pages.

The escaping policy: every string from a study is user text. In the page's text it goes through
:func:`page_text` (``html.escape``); in a figure, through ``_figures.plot_text`` (Plotly reads a
small HTML subset); and the figures' JSON sits in ``<script type="application/json">`` blocks
with ``<``, ``>`` and ``&`` written as ``\\u003c``... (:func:`script_json`), so no study name can
close the block or open a tag. The page marks on ``<body>`` how many plots it drew
(``data-plots-drawn`` against ``data-plots-expected``) and any script error
(``data-js-errors``), which the browser test reads.

Figures are stored compactly: numbers rounded to 6 significant digits, and the Plotly template
every figure shares written once (``data-template`` names it). A *deferred* figure (one task's
view of the dashboard) is drawn only when its ``section.task`` is shown; the page shows one
task at a time, the one named in the address (``#task=NAME``) or the first, and marks the time
its figures took to draw (``data-task-ms``, ``data-task-shown``).
"""

from __future__ import annotations

import html
import json
from collections.abc import Sequence

__all__ = [
    "PageFigures",
    "script_json",
    "page_text",
    "html_document",
]

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
  var body = document.body;
  var templates = {};
  document.querySelectorAll("script.plot-template").forEach(function (node) {
    try { templates[node.dataset.template] = JSON.parse(node.textContent); }
    catch (e) { window.spotpatchReport(e); }
  });
  function draw(nodes) {
    var drawing = [];
    nodes.forEach(function (node) {
      try {
        var fig = JSON.parse(node.textContent);
        if (node.dataset.template !== undefined) {
          fig.layout.template = templates[node.dataset.template];
        }
        drawing.push(Plotly.newPlot(node.dataset.target, fig.data, fig.layout,
                                    {responsive: true, displaylogo: false}));
      } catch (e) { window.spotpatchReport(e); }
    });
    return Promise.all(drawing);
  }
  function countDrawn() {
    body.dataset.plotsDrawn = String(Array.prototype.filter.call(
      document.querySelectorAll(".js-plotly-plot"),
      function (div) { return div.querySelector("svg.main-svg") !== null; }).length);
  }
  var sections = Array.prototype.slice.call(document.querySelectorAll("section.task"));
  var select = document.getElementById("task-select");
  function chosen() {
    var m = /^#task=(.*)$/.exec(window.location.hash);
    if (!m) { return null; }
    try { return decodeURIComponent(m[1]); } catch (e) { return null; }
  }
  function show(name) {
    var section = sections.filter(function (s) { return s.dataset.task === name; })[0];
    section = section || sections[0];
    if (!section) { return Promise.resolve(); }
    sections.forEach(function (s) { s.hidden = s !== section; });
    if (select) { select.value = section.dataset.task; }
    if (section.dataset.drawn) {
      section.querySelectorAll(".js-plotly-plot").forEach(function (div) {
        Plotly.Plots.resize(div);
      });
      return Promise.resolve();
    }
    section.dataset.drawn = "1";
    var start = performance.now();
    var nodes = section.querySelectorAll("script.plot-data");
    body.dataset.plotsExpected = String(Number(body.dataset.plotsExpected) + nodes.length);
    return draw(nodes).then(function () {
      body.dataset.taskMs = String(Math.round(performance.now() - start));
      body.dataset.taskShown = section.dataset.task;
      countDrawn();
    });
  }
  if (select) {
    select.addEventListener("change", function () {
      window.location.hash = "task=" + encodeURIComponent(select.value);
    });
  }
  window.addEventListener("hashchange", function () {
    var name = chosen();  // another anchor (a section's) keeps the task shown
    if (name !== null) { show(name).catch(window.spotpatchReport); }
  });
  var eager = document.querySelectorAll("script.plot-data:not([data-deferred])");
  Promise.all([draw(eager), show(chosen())]).then(function () {
    countDrawn();
    body.dataset.drawMs = String(Math.round(performance.now()));
  }, window.spotpatchReport);
})();
"""


def _rounded(value):
    """``value`` (parsed JSON) with every float rounded to 6 significant digits: far below
    what a figure shows (mAP to 4 decimals), a third of the characters of a float's repr."""
    if isinstance(value, float):
        return float(f"{value:.6g}")
    if isinstance(value, list):
        return [_rounded(v) for v in value]
    if isinstance(value, dict):
        return {k: _rounded(v) for k, v in value.items()}
    return value


def _compact_json(value) -> str:
    return script_json(json.dumps(value, separators=(",", ":"), ensure_ascii=False))


def script_json(text: str) -> str:
    """JSON made safe inside a ``<script>`` block: no ``<``, ``>`` or ``&`` left raw."""
    return (
        text.replace("&", "\\u0026")
        .replace("<", "\\u003c")
        .replace(">", "\\u003e")
        .replace("\u2028", "\\u2028")
        .replace("\u2029", "\\u2029")
    )


def page_text(value: object) -> str:
    """``value`` as HTML text (or an attribute value): nothing in it can become markup."""
    return html.escape(str(value))


class PageFigures:
    """Collects a page's figures: a placeholder where each goes, its JSON in a block.

    A figure from :meth:`figure` is drawn when the page loads (its block goes to the page's
    end); one from :meth:`deferred` is drawn when the ``section.task`` holding it is shown (its
    block stays beside its placeholder). The template every figure shares is written once.
    """

    def __init__(self) -> None:
        self.blocks: list[str] = []
        self.count = 0
        self.eager = 0
        self._templates: dict[str, int] = {}

    def _block(self, fig, target: str, *, deferred: bool) -> str:
        spec = json.loads(fig.to_json())
        template = spec.get("layout", {}).pop("template", None)
        attrs = ' data-deferred=""' if deferred else ""
        if template is not None:
            key = json.dumps(template, sort_keys=True, separators=(",", ":"))
            attrs += f' data-template="{self._templates.setdefault(key, len(self._templates))}"'
        return (
            f'<script type="application/json" class="plot-data" data-target="{target}"{attrs}>'
            f"{_compact_json(_rounded(spec))}</script>"
        )

    def _target(self) -> str:
        self.count += 1
        return f"plot-{self.count - 1}"

    def figure(self, fig) -> str:
        """The placeholder of ``fig`` (nothing for None), drawn at load; its JSON is kept for
        the page's end."""
        if fig is None:
            return ""
        target = self._target()
        self.eager += 1
        self.blocks.append(self._block(fig, target, deferred=False))
        return f'<div class="plot" id="{target}"></div>'

    def deferred(self, fig) -> str:
        """The placeholder of ``fig`` and its JSON (nothing for None), drawn when the task
        section holding them is shown."""
        if fig is None:
            return ""
        target = self._target()
        block = self._block(fig, target, deferred=True)
        return f'<div class="plot" id="{target}"></div>{block}'

    def template_blocks(self) -> list[str]:
        """The shared templates' blocks, each written once."""
        return [
            f'<script type="application/json" class="plot-template" data-template="{i}">'
            f"{script_json(key)}</script>"
            for key, i in self._templates.items()
        ]


def html_document(title: str, body: Sequence[str], figures: PageFigures) -> str:
    """The whole page: ``body`` (HTML, escaped already) then the figures' blocks, with
    plotly.js, the error catcher and the drawing script inlined. ``data-plots-expected``
    counts the figures drawn at load; showing a task adds its own."""
    from plotly.offline import get_plotlyjs

    # plotly.js holds no "</script" today; never let a future release end the block early.
    plotly_js = get_plotlyjs().replace("</script", "<\\/script")
    return "\n".join(
        [
            "<!DOCTYPE html>",
            '<html lang="en"><head><meta charset="utf-8">',
            '<meta name="viewport" content="width=device-width, initial-scale=1">',
            f"<title>{page_text(title)}</title>",
            f"<style>{_STYLE}</style>",
            f"<script>{_CATCH_ERRORS}</script>",
            f"<script>{plotly_js}</script>",
            "</head>",
            f'<body data-plots-expected="{figures.eager}">',
            '<p id="js-errors" hidden></p>',
            *body,
            *figures.template_blocks(),
            *figures.blocks,
            f"<script>{_DRAW}</script>",
            "</body></html>",
        ]
    )
