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
"""

from __future__ import annotations

import html
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


def page_text(value: object) -> str:
    """``value`` as HTML text (or an attribute value): nothing in it can become markup."""
    return html.escape(str(value))


class PageFigures:
    """Collects a page's figures: a placeholder where each goes, its JSON block for the end."""

    def __init__(self) -> None:
        self.blocks: list[str] = []
        self.count = 0

    def figure(self, fig) -> str:
        """The placeholder of ``fig`` (nothing for None); its JSON is kept for the page's end."""
        if fig is None:
            return ""
        target = f"plot-{self.count}"
        self.count += 1
        self.blocks.append(
            f'<script type="application/json" class="plot-data" data-target="{target}">'
            f"{script_json(fig.to_json())}</script>"
        )
        return f'<div class="plot" id="{target}"></div>'


def html_document(title: str, body: Sequence[str], figures: PageFigures) -> str:
    """The whole page: ``body`` (HTML, escaped already) then the figures' blocks, with
    plotly.js, the error catcher and the drawing script inlined."""
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
            f'<body data-plots-expected="{figures.count}">',
            '<p id="js-errors" hidden></p>',
            *body,
            *figures.blocks,
            f"<script>{_DRAW}</script>",
            "</body></html>",
        ]
    )
