"""The Pareto dashboard: what stored studies found, as one offline HTML page or a local server.

Records (``_data``, ``_placement``, ``_site_bytes``) are computed from the studies' trial
records (``search``'s record reader), and ``_across`` lays out ``studies``' report across tasks;
figures (``_figures``, ``_fleet_figures``) draw them, the pages (``_html`` for the dashboard,
``_report_page`` for the report alone) hold them with plotly.js inlined (``_page``: the parts
every page shares, its escaping policy and crash-safe write), and ``_serve`` rebuilds the
dashboard per request on 127.0.0.1. Imports from ``studies``, ``search`` and ``spaces``; plotly
is imported when a figure is drawn.
"""

from __future__ import annotations

from spotpatch.dashboard._across import AcrossTasks, DifficultyPoint, across_tasks
from spotpatch.dashboard._data import (
    DashboardData,
    FleetView,
    HypervolumeSeries,
    StudyPanel,
    TrialPoint,
    TrialsScatter,
    dashboard_data,
    fleet_view,
    hypervolume_series,
    trials_scatter,
)
from spotpatch.dashboard._html import render_dashboard, task_link, write_dashboard
from spotpatch.dashboard._placement import Placement, placement
from spotpatch.dashboard._report_page import render_report_html, write_report_html
from spotpatch.dashboard._serve import DEFAULT_PORT, HOST, make_server, serve_dashboard
from spotpatch.dashboard._site_bytes import SiteBytes, site_bytes

__all__ = [
    "DEFAULT_PORT",
    "HOST",
    "AcrossTasks",
    "DashboardData",
    "DifficultyPoint",
    "FleetView",
    "HypervolumeSeries",
    "Placement",
    "SiteBytes",
    "StudyPanel",
    "TrialPoint",
    "TrialsScatter",
    "across_tasks",
    "dashboard_data",
    "fleet_view",
    "hypervolume_series",
    "make_server",
    "placement",
    "render_dashboard",
    "render_report_html",
    "serve_dashboard",
    "site_bytes",
    "task_link",
    "trials_scatter",
    "write_dashboard",
    "write_report_html",
]
