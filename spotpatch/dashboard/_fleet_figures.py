"""Figures across tasks: the fleet's bytes (:class:`FleetView`) and the report's difficulty
against patch size (:class:`AcrossTasks`), one function per record.

Every string from a study goes through :func:`~spotpatch.dashboard._figures.plot_text`, as in
the other figures.
"""

from __future__ import annotations

from spotpatch._format import kib
from spotpatch.dashboard._across import AcrossTasks
from spotpatch.dashboard._data import FleetView
from spotpatch.dashboard._figures import base_layout, plot_text

__all__ = ["fleet_figure", "difficulty_figure"]

#: Up to this many points, each is labelled with its study's name; beyond, the labels would
#: cover each other, and the name shows on hover.
_LABELLED = 12


def fleet_figure(data: FleetView):
    """Per task and in total: the selected patch against a full detector (None: no task)."""
    import plotly.graph_objects as go

    if not data.tasks:
        return None
    names = [plot_text(t) for t in data.tasks] + ["all tasks"]
    patches = [*data.patch_bytes, data.total_patch_bytes]
    fulls = [*data.full_bytes, data.total_full_bytes]
    maps = [f"trial {n}, mAP {m:.3f}" for n, m in zip(data.trials, data.maps, strict=True)]
    maps.append(f"{len(data.tasks)} patches")
    fig = go.Figure(
        [
            go.Bar(
                x=names,
                y=patches,
                name=f"patch ({plot_text(data.rule)})",
                marker={"color": "#4c72b0"},
                hovertext=[
                    f"{b:,} bytes ({kib(b)})<br>{m}" for b, m in zip(patches, maps, strict=True)
                ],
                hoverinfo="x+text",
            ),
            go.Bar(
                x=names,
                y=fulls,
                name="full detector per task",
                marker={"color": "#c44e52"},
                hovertext=[f"{b:,} bytes ({kib(b)})" for b in fulls],
                hoverinfo="x+text",
            ),
        ]
    )
    fig.update_layout(
        base_layout(
            "Fleet: each task's patch against one full detector per task",
            yaxis={"type": "log", "title": {"text": "bytes (log)"}},
            xaxis={"type": "category"},
            barmode="group",
            height=420,
        )
    )
    return fig


def difficulty_figure(data: AcrossTasks):
    """Difficulty against the answer's bytes %, one point per study that has both (labelled
    with its name when there are few); Spearman's rho and p in the title when the report
    computed them (None: no point)."""
    import plotly.graph_objects as go

    if not data.points:
        return None
    xs = [p.difficulty for p in data.points]
    title = "Difficulty against the patch's size"
    if data.rho is not None:
        title += f" (Spearman ρ = {data.rho:.2f}, p = {data.p_value:.3g})"
    fig = go.Figure(
        go.Scatter(
            x=xs,
            y=[p.bytes_pct for p in data.points],
            mode="markers+text" if len(data.points) <= _LABELLED else "markers",
            text=[plot_text(p.study) for p in data.points],
            textposition="top center",
            hovertext=[
                f"{plot_text(p.study)}<br>difficulty {p.difficulty:.3f}<br>"
                f"patch: mAP {p.map:.3f}, {p.bytes_pct:.1f} % of the full detector"
                for p in data.points
            ],
            hoverinfo="text",
            name=f"patch ({plot_text(data.rule)})",
            marker={"size": 10, "color": "#4c72b0", "line": {"width": 0.5, "color": "#333"}},
        )
    )
    # Plotly sizes the axis to the markers, not their labels: room for the outer ones' text.
    pad = max(0.15 * (max(xs) - min(xs)), 0.01)
    fig.update_layout(
        base_layout(
            title,
            xaxis={
                "title": {"text": "difficulty (full fine-tune mAP - head-only mAP)"},
                "range": [min(xs) - pad, max(xs) + pad],
            },
            yaxis={
                "title": {"text": "patch bytes (% of the full detector)"},
                "rangemode": "tozero",
            },
            height=420,
        )
    )
    return fig
