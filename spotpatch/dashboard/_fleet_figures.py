"""Figures across tasks: the fleet's bytes (:class:`FleetView`).

Every string from a study goes through :func:`~spotpatch.dashboard._figures.plot_text`, as in
the other figures.
"""

from __future__ import annotations

from spotpatch.dashboard._data import FleetView
from spotpatch.dashboard._figures import base_layout, kib, plot_text

__all__ = ["fleet_figure"]


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
                name=f"selected patch ({plot_text(data.rule)})",
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
            "Fleet: selected patches against one full detector per task",
            yaxis={"type": "log", "title": {"text": "bytes (log)"}},
            xaxis={"type": "category"},
            barmode="group",
            height=420,
        )
    )
    return fig
