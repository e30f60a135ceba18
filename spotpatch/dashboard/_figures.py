"""Drawing the dashboard's records as Plotly figures: one function per record (those of one
study, search progress and placement here; the fleet and the report across tasks in
``_fleet_figures``, which shares this module's layout and text helpers).

Plotly reads a small HTML subset in every text it draws (titles, ticks, legends, hovers), so
each string that comes from a study goes through :func:`plot_text` first: ``<`` shows as ``<``
and never becomes a tag.
"""

from __future__ import annotations

import html
from collections.abc import Sequence

from spotpatch._format import kib
from spotpatch.dashboard._data import HypervolumeSeries, TrialPoint, TrialsScatter
from spotpatch.dashboard._placement import Placement, kind_strength
from spotpatch.dashboard._site_bytes import SiteBytes

__all__ = [
    "plot_text",
    "base_layout",
    "scatter_figure",
    "hypervolume_figure",
    "placement_figure",
    "relaxation_figure",
    "site_bytes_figure",
]

#: Colors per kind family, weakest to strongest (shared is the base's own tensors).
KIND_COLORS = {
    "shared": "#e8e8e8",
    "bn": "#9ecae1",
    "dw": "#41ab5d",
    "lora": "#fd8d3c",
    "full": "#cb181d",
    "norm": "#9e9ac8",
    "": "#636363",
}
SOURCE_STYLE = {
    "sampler": ("circle", "#4c72b0", "sampler"),
    "retry": ("circle", "#4c72b0", "sampler"),
    "relaxation": ("diamond", "#dd8452", "warm start"),
    "preset": ("square", "#55a868", "preset"),
}
BYTES_AXIS = {"type": "log", "title": {"text": "patch bytes (log)"}}


def plot_text(value: object) -> str:
    """A string Plotly shows as is: its HTML subset escaped (Plotly decodes the entities)."""
    return html.escape(str(value), quote=False)


def base_layout(title: str, **extra) -> dict:
    """The layout every figure starts from: ``title`` (already :func:`plot_text`) and ``extra``."""
    return {
        "title": {"text": title},
        "template": "plotly_white",
        "margin": {"l": 70, "r": 30, "t": 60, "b": 60},
        "hoverlabel": {"align": "left"},
        **extra,
    }


def _color(kind: str | None) -> str:
    if kind is None:
        return "#ffffff"
    family = "lora" if kind.startswith("lora") else kind
    return KIND_COLORS.get(family, "#756bb1")


def _ap50_text(map50: float | None) -> str:
    return "" if map50 is None else f" (AP50 {map50:.3f})"


def _trial_hover(points: Sequence[TrialPoint]) -> tuple[list[list], str]:
    """The hover of a trace of trials: each trial's own values (Plotly's ``customdata``) and
    one template that shows them, so that a thousand trials carry their numbers and configs,
    not a thousand copies of the same words. What every trial of the trace shares (its source,
    most often) is written in the template."""
    every_ap50 = all(p.map50 is not None for p in points)
    rows: list[list] = [
        [
            p.number,
            round(p.map50, 3) if every_ap50 else _ap50_text(p.map50),
            plot_text(p.summary),
            round(p.bytes / 1024, 1),
        ]
        for p in points
    ]

    def each(values: Sequence[str]) -> str:
        """A column of per-trial text, and its place in the template."""
        for row, value in zip(rows, values, strict=True):
            row.append(value)
        return f"%{{customdata[{len(rows[0]) - 1}]}}"

    template = "trial %{customdata[0]}: mAP %{y:.4f}"
    template += " (AP50 %{customdata[1]:.3f})" if every_ap50 else "%{customdata[1]}"
    template += "<br>%{x:,} bytes (%{customdata[3]:,.1f} KiB)<br>%{customdata[2]}<br>source: "
    sources = [plot_text(p.source) for p in points]
    template += sources[0] if len(set(sources)) == 1 else each(sources)
    if any(p.preset for p in points):
        template += each(
            [f"<br>preset: {plot_text(p.preset)}" if p.preset else "" for p in points]
        )
    return rows, template + "<extra></extra>"


def scatter_figure(scatter: TrialsScatter):
    """mAP against patch bytes: trials by source, the front, presets named, the selection."""
    import plotly.graph_objects as go

    fig = go.Figure()
    groups: dict[str, list] = {}
    for p in scatter.points:
        groups.setdefault(SOURCE_STYLE.get(p.source, SOURCE_STYLE["sampler"])[2], []).append(p)

    for label, points in groups.items():
        symbol, color, _ = next(s for s in SOURCE_STYLE.values() if s[2] == label)
        presets = label == "preset"
        customdata, hovertemplate = _trial_hover(points)
        fig.add_trace(
            go.Scatter(
                x=[p.bytes for p in points],
                y=[p.map for p in points],
                mode="markers+text" if presets else "markers",
                text=[plot_text(p.preset or "") for p in points] if presets else None,
                textposition="top center",
                customdata=customdata,
                hovertemplate=hovertemplate,
                name=label,
                marker={
                    "symbol": symbol,
                    "color": color,
                    "size": 9 if presets else 7,
                    "opacity": 0.85,
                    "line": {"width": 0.5, "color": "#333"},
                },
            )
        )
    if scatter.front:
        fig.add_trace(
            go.Scatter(
                x=[p.bytes for p in scatter.front],
                y=[p.map for p in scatter.front],
                mode="lines",
                line={"shape": "hv", "color": "#333", "width": 1.5},
                name="Pareto front",
                hoverinfo="skip",
            )
        )
    answer = scatter.answer
    if answer is not None:
        runs = f" (mean of {answer.runs} runs)" if answer.runs > 1 else ""
        said = f"{plot_text(answer.rule)}: trial {answer.trial}, mAP {answer.map:.4f}{runs}<br>"
        said += f"{answer.patch_bytes:,} bytes ({kib(answer.patch_bytes)})"
        c = answer.confirmation
        if c is not None and (delta := c.delta_text()) is not None:
            said += f"<br>Δ vs full on fresh seeds: {plot_text(delta)}"
        fig.add_trace(
            go.Scatter(
                x=[answer.patch_bytes],
                y=[answer.map],
                mode="markers",
                marker={
                    "symbol": "star",
                    "size": 16,
                    "color": "#ffd92f",
                    "line": {"width": 1, "color": "#333"},
                },
                name=plot_text(answer.rule),
                hovertext=[said],
                hoverinfo="text",
            )
        )
    top = max((p.map for p in scatter.points), default=1.0) or 1.0
    fig.add_trace(
        go.Scatter(
            x=[scatter.full_bytes, scatter.full_bytes],
            y=[0, top],
            mode="lines",
            line={"dash": "dash", "color": "#999", "width": 1},
            name="full fine-tune size",
            hovertext=[f"full fine-tune: {scatter.full_bytes:,} bytes"] * 2,
            hoverinfo="text",
        )
    )
    fig.update_layout(
        base_layout(
            f"{plot_text(scatter.study)}: {len(scatter.points)} trials, "
            f"front of {len(scatter.front)}",
            xaxis=BYTES_AXIS,
            yaxis={"title": {"text": "val mAP"}, "rangemode": "tozero"},
            height=430,
        )
    )
    return fig


def _steps(xs: Sequence[int], ys: Sequence[float]) -> tuple[list[int], list[float]]:
    """The points of a step line where it changes, and its last: drawn as steps (``hv``),
    the same line from fewer points (a front grows in a few dozen of a thousand trials).

    >>> _steps([1, 2, 3, 4, 5], [0.1, 0.1, 0.3, 0.3, 0.3])
    ([1, 3, 5], [0.1, 0.3, 0.3])
    """
    keep = [i for i in range(len(ys)) if i == 0 or ys[i] != ys[i - 1] or i == len(ys) - 1]
    return [xs[i] for i in keep], [ys[i] for i in keep]


#: Up to this many studies, the hypervolume's lines show their points and the legend sits below
#: the plot; beyond, lines alone, the legend at their right (Plotly scrolls a legend taller
#: than the plot).
_LEGEND_BELOW = 6


def hypervolume_figure(series: Sequence[HypervolumeSeries]):
    """Hypervolume after each trial, one line per study: solid warm-started, dotted cold;
    a point where the front grew (and the last), the line stepping between them."""
    import plotly.graph_objects as go

    fig = go.Figure()
    below = len(series) <= _LEGEND_BELOW
    for s in series:
        warm = s.warm_start != "none"
        cost = (
            f", warm start ~{s.relaxation_trials:.1f} trials"
            if s.relaxation_trials is not None
            else ""
        )
        name = f"{plot_text(s.study)} ({'warm' if warm else 'cold'}, {plot_text(s.sampler)}{cost})"
        xs, ys = _steps(s.trials, s.hypervolume)
        fig.add_trace(
            go.Scatter(
                x=xs,
                y=ys,
                mode="lines+markers" if below else "lines",
                marker={"size": 4},
                line={"dash": "solid" if warm else "dot", "shape": "hv"},
                name=name,
                hovertemplate="trial %{x}: hypervolume %{y:.4f}<extra>"
                + plot_text(s.study)
                + "</extra>",
            )
        )
    fig.update_layout(
        base_layout(
            "Hypervolume as trials finish (solid: warm-started, dotted: cold)",
            xaxis={"title": {"text": "trials asked"}},
            yaxis={"title": {"text": "hypervolume"}, "rangemode": "tozero"},
            legend={"orientation": "h", "y": -0.25} if below else {"font": {"size": 10}},
            height=420 if below else 560,
        )
    )
    return fig


def _discrete_scale(kinds: Sequence[str]) -> list:
    n = max(len(kinds), 1)
    scale = []
    for i, kind in enumerate(kinds):
        scale += [[i / n, _color(kind)], [(i + 1) / n, _color(kind)]]
    return scale or [[0, "#ffffff"], [1, "#ffffff"]]


def _heatmap_height(rows: int) -> int:
    """Room for ``rows`` rows: narrower ones when there are many studies."""
    return 260 + (32 if rows <= 12 else 20) * rows


def placement_figure(data: Placement):
    """Tasks x sites: the kind of each task's selected patch."""
    import plotly.graph_objects as go

    present = sorted({k for row in data.kinds for k in row if k is not None}, key=kind_strength)
    index = {k: i for i, k in enumerate(present)}
    z = [[index[k] if k is not None else None for k in row] for row in data.kinds]
    text = [[plot_text(k) if k is not None else "no selection" for k in row] for row in data.kinds]
    fig = go.Figure(
        go.Heatmap(
            z=z,
            x=[plot_text(s) for s in data.sites],
            y=[plot_text(t) for t in data.tasks],
            text=text,
            hovertemplate="%{y}<br>%{x}<br>%{text}<extra></extra>",
            colorscale=_discrete_scale(present),
            zmin=-0.5,
            zmax=max(len(present), 1) - 0.5,
            xgap=1,
            ygap=1,
            colorbar={
                "tickvals": list(range(len(present))),
                "ticktext": [plot_text(k) for k in present],
                "title": {"text": "kind"},
            },
        )
    )
    fig.update_layout(
        base_layout(
            "Placement: the kind each task's selected patch gives each site",
            xaxis={"tickangle": -60, "tickfont": {"size": 9}, "type": "category"},
            yaxis={"type": "category", "autorange": "reversed"},
            height=_heatmap_height(len(data.tasks)),
        )
    )
    return fig


def relaxation_figure(data: Placement):
    """Tasks x gates: the warm start's probability of patching each gate (None: no figure)."""
    import plotly.graph_objects as go

    rows = [i for i, row in enumerate(data.patched_probability) if any(v is not None for v in row)]
    if not rows or not data.gates:
        return None
    labels = []
    for i in rows:
        lam = data.relaxation_lambda[i]
        labels.append(plot_text(data.tasks[i]) + (f" (λ={lam:g})" if lam is not None else ""))
    fig = go.Figure(
        go.Heatmap(
            z=[list(data.patched_probability[i]) for i in rows],
            x=[plot_text(g) for g in data.gates],
            y=labels,
            zmin=0,
            zmax=1,
            colorscale="Blues",
            xgap=1,
            ygap=1,
            hovertemplate="%{y}<br>%{x}<br>P(patched) %{z:.2f}<extra></extra>",
            colorbar={"title": {"text": "P(patched)"}},
        )
    )
    fig.update_layout(
        base_layout(
            "Warm start: the relaxation's probability of patching each gate "
            "(phase closest in size to the selected patch)",
            xaxis={"tickangle": -60, "tickfont": {"size": 9}, "type": "category"},
            yaxis={"type": "category", "autorange": "reversed"},
            height=_heatmap_height(len(rows)),
        )
    )
    return fig


def site_bytes_figure(data: SiteBytes):
    """Bytes per site of a patch, one bar each, colored by kind (None: nothing to draw)."""
    import plotly.graph_objects as go

    if not data.labels:
        return None
    fig = go.Figure()
    by_kind: dict[str, list[int]] = {}
    for i, kind in enumerate(data.kinds):
        by_kind.setdefault(kind, []).append(i)
    for kind in sorted(by_kind, key=lambda k: (k != "", kind_strength(k or None))):
        idx = by_kind[kind]
        fig.add_trace(
            go.Bar(
                x=[data.bytes[i] for i in idx],
                y=[plot_text(data.labels[i]) for i in idx],
                orientation="h",
                name=plot_text(kind) if kind else "class head",
                marker={"color": _color(kind)},
                hovertemplate="%{y}: %{x:,} bytes<extra>"
                + (plot_text(kind) or "class head")
                + "</extra>",
            )
        )
    fig.update_layout(
        base_layout(
            f"{plot_text(data.study)}: bytes per site of trial {data.trial} "
            f"({data.total:,} bytes)",
            xaxis=BYTES_AXIS,
            yaxis={
                "type": "category",
                "categoryorder": "array",
                "categoryarray": [plot_text(s) for s in data.labels],
                "autorange": "reversed",
                "tickfont": {"size": 9},
            },
            barmode="overlay",
            height=160 + 16 * len(data.labels),
        )
    )
    return fig
