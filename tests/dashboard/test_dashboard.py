"""The dashboard on synthetic studies (no training): its records, the page, the report's page,
the server, the CLI and, where Chromium is installed, the drawing in a headless browser."""

from __future__ import annotations

import html
import json
import os
import re
import signal
import subprocess
import sys
import threading
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from spotpatch._errors import UserError
from spotpatch.cli import main
from spotpatch.dashboard import (
    HOST,
    across_tasks,
    dashboard_data,
    hypervolume_series,
    make_server,
    placement,
    render_dashboard,
    site_bytes,
    trials_scatter,
    write_dashboard,
    write_report_html,
)
from spotpatch.dashboard._data import TrialPoint
from spotpatch.dashboard._figures import _steps, _trial_hover, hypervolume_figure, scatter_figure
from spotpatch.dashboard._fleet_figures import difficulty_figure
from spotpatch.dashboard._page import script_json
from spotpatch.dashboard._site_bytes import HEAD, attribute_tensors
from spotpatch.search import front_points, hypervolume, study_answer, study_meta, trial_records
from spotpatch.studies import fleet_report, load_study, open_storage, selected_trial
from spotpatch.testing import (
    find_chromium,
    load_in_chromium,
    synthetic_site_bytes,
    synthetic_study,
)

EVIL = "<script>alert(1)</script>"
EVIL_CLASS = "<img src=x onerror=document.body.dataset.pwned=1>"
#: A study name an address must encode (``#task=NAME``) and a page must escape.
ODD = "zéro & un #2 = <b>ü</b>"
FLEET = 35


@pytest.fixture(scope="module")
def url(tmp_path_factory) -> str:
    root = tmp_path_factory.mktemp("dash")
    url = f"sqlite:///{root / 'studies.db'}"
    storage = open_storage(url)
    art = root / "artifacts"
    synthetic_study(storage, "pets", trials=24, seed=0, failed=2, artifacts=art)
    synthetic_study(storage, "pets-cold", trials=24, seed=1, warm_start=False, artifacts=art)
    synthetic_study(
        storage, EVIL, trials=8, seed=2, failed=1, classes=("cat", EVIL_CLASS), artifacts=None
    )
    synthetic_study(storage, "just-started", trials=0, failed=1)
    return url


@pytest.fixture(scope="module")
def storage(url):
    return open_storage(url)


@pytest.fixture(scope="module")
def data(storage):
    return dashboard_data(storage)


@pytest.fixture(scope="module")
def page(url, tmp_path_factory) -> Path:
    return write_dashboard(url, tmp_path_factory.mktemp("page") / "dashboard.html")


@pytest.fixture(scope="module")
def report_page(storage, tmp_path_factory) -> Path:
    report = fleet_report(storage)
    return write_report_html(report, tmp_path_factory.mktemp("report") / "report.html")


@pytest.fixture(scope="module")
def fleet(tmp_path_factory) -> dict:
    """Dashboards of 35 studies of 4 trials each, and of the first of them alone (in memory:
    built in a second); two studies store their patch tensors, one name is :data:`ODD`."""
    import optuna

    art = tmp_path_factory.mktemp("fleet-art")
    names = [f"task-{i:02d}" for i in range(FLEET - 1)] + [ODD]
    many, one = optuna.storages.InMemoryStorage(), optuna.storages.InMemoryStorage()
    for i, name in enumerate(names):
        stored = art if name in ("task-00", ODD) else None
        synthetic_study(
            many, name, trials=4, seed=i, warm_start=i % 2 == 0, failed=0, artifacts=stored
        )
    synthetic_study(one, "task-00", trials=4, seed=0, failed=0, artifacts=art / "alone")
    page = tmp_path_factory.mktemp("fleet") / "dashboard.html"
    page.write_text(render_dashboard(dashboard_data(many)), encoding="utf-8")
    return {"names": names, "page": page, "alone": render_dashboard(dashboard_data(one))}


def _blocks(text: str) -> tuple[list[str], list[str]]:
    """The figures' JSON blocks of a page: those drawn at load, those drawn with their task."""
    found = re.findall(
        r'<script type="application/json" class="plot-data"([^>]*)>(.*?)</script>', text, re.S
    )
    eager = [block for attrs, block in found if "data-deferred" not in attrs]
    return eager, [block for attrs, block in found if "data-deferred" in attrs]


def _task_sections(text: str) -> dict[str, str]:
    """Each task's section of a page (or of a DOM dump), by the study's name."""
    sections = re.findall(r'(<section class="task" data-task="([^"]*)".*?</section>)', text, re.S)
    return {html.unescape(name): section for section, name in sections}


def _hidden(section: str) -> bool:
    """Whether a section's opening tag hides it."""
    return re.search(r"\shidden\b", section[: section.index(">")]) is not None


def _across(text: str) -> str:
    """The "Across tasks" section of a page (or of a DOM dump)."""
    found = re.search(r'<section id="across-tasks">.*?</section>', text, re.S)
    assert found, "no Across tasks section"
    return found[0]


def _dominated(p, q) -> bool:
    """q dominates p: no less mAP, no more bytes, better in one."""
    return q.map >= p.map and q.bytes <= p.bytes and (q.map > p.map or q.bytes < p.bytes)


# -- records -----------------------------------------------------------------------------------
def test_scatter_front_sources_and_selection(storage):
    study = load_study("pets", storage)
    scatter = trials_scatter(study, None)
    assert len(scatter.points) == 24
    front = {p.number for p in scatter.front}
    for p in scatter.points:
        beaten = any(_dominated(p, q) for q in scatter.points)
        twin = any(
            (q.map, q.bytes) == (p.map, p.bytes) and q.number < p.number for q in scatter.points
        )
        assert p.on_front == (p.number in front) == (not beaten and not twin)
    sources = [p.source for p in scatter.points]
    # The warm start's third config is the head preset's, which a study does not queue twice.
    assert sources.count("preset") == 2 and sources.count("relaxation") == 2
    assert {p.preset for p in scatter.points if p.preset} == {"head", "full"}
    assert all(p.summary for p in scatter.points)
    assert scatter.selected == selected_trial(study).number
    assert len(scatter.failed) == 2 and "synthetic failure" in scatter.failed[0][1]


def test_scatter_selection_note_when_nothing_fits(storage):
    scatter = trials_scatter(load_study("pets", storage), "min-map=0.99")
    assert scatter.selected is None and "0.99" in scatter.selection_note


def test_hypervolume_series_warm_and_cold(storage):
    warm = hypervolume_series(load_study("pets", storage))
    cold = hypervolume_series(load_study("pets-cold", storage))
    for series, name in ((warm, "pets"), (cold, "pets-cold")):
        study = load_study(name, storage)
        hv = series.hypervolume
        assert len(hv) == len(series.trials) == 24
        assert all(b >= a - 1e-12 for a, b in zip(hv, hv[1:], strict=False))
        points = front_points(trial_records(study))
        assert hv[-1] == pytest.approx(hypervolume(points, study_meta(study).full_bytes))
    assert (warm.warm_start, cold.warm_start) == ("relaxation", "none")
    assert warm.relaxation_trials == pytest.approx(12.0 / 5.5, rel=0.1)
    assert cold.relaxation_trials is None


def test_site_bytes_match_the_patch_tensors(storage):
    study = load_study("pets", storage)
    for trial in study.get_trials():
        if trial.values is None:
            continue
        record = site_bytes(study, trial.number)
        assert record.note is None
        assert record.total == record.patch_bytes == trial.user_attrs["patch_bytes"]
        expected = synthetic_site_bytes(trial.user_attrs["config"])
        assert dict(zip(record.labels, record.bytes, strict=True)) == expected
        assert record.labels[0] == HEAD
        kinds = dict(zip(record.labels, record.kinds, strict=True))
        assert all(kinds[s] == k for s, k in trial.user_attrs["config"].items())


def test_site_bytes_without_artifact(storage):
    study = load_study(EVIL, storage)
    record = site_bytes(study, 0)
    assert record.labels == () and "no patch tensors" in record.note


def test_site_bytes_of_an_artifact_folder_not_here_or_a_file_missing_from_it(tmp_path):
    storage = open_storage(f"sqlite:///{tmp_path}/s.db")
    study = synthetic_study(storage, "pets", trials=3, failed=0, artifacts=tmp_path / "art")
    assert site_bytes(study, 0).note is None
    # The storage viewed where the artifact folder is not mounted: the page says so.
    (tmp_path / "art").rename(tmp_path / "elsewhere")
    record = site_bytes(study, 0)
    assert record.labels == () and f"not found in {tmp_path / 'art'}" in record.note
    # The folder is here but the trial's file is not: refused, as export refuses it.
    (tmp_path / "elsewhere").rename(tmp_path / "art")
    (tmp_path / "art" / "pets-0").unlink()
    with pytest.raises(UserError, match="patch tensors of trial 0 of study 'pets'"):
        site_bytes(study, 0)


def test_attribute_tensors_norms_lora_and_head():
    sizes = {
        "a.0.weight": 100,
        "a.1.weight": 4,
        "a.1.running_var": 4,
        "b.conv.lora_A": 8,
        "b.conv.lora_B": 8,
        "b.bn.weight": 2,
        "b.bn.running_mean": 2,
        "head.cls.weight": 50,
    }
    out = attribute_tensors(sizes, ["a.0", "b.conv"])
    assert out == {"a.0": 108, "b.conv": 16, "b.bn (norm)": 4, HEAD: 50}


def test_attribute_tensors_counts_int8_scales_with_their_weight():
    sizes = {
        "a.0.weight": 100,
        "a.0.weight.qscale": 8,
        "a.1.weight": 8,
        "a.1.running_var": 8,
        "b.conv.lora_A": 36,
        "b.conv.lora_A.qscale": 8,
        "head.cls.weight": 50,
        "head.cls.weight.qscale": 10,
    }
    out = attribute_tensors(sizes, ["a.0", "b.conv"])
    assert out == {"a.0": 124, "b.conv": 44, HEAD: 60}


def test_placement_kinds_and_relaxation(storage):
    names = ["pets", "pets-cold"]
    studies = [load_study(n, storage) for n in names]
    chosen = [selected_trial(s) for s in studies]
    data = placement(studies, [t.number for t in chosen])
    assert data.tasks == tuple(names)
    assert list(data.sites) == sorted(data.sites, key=lambda s: [int(p) for p in s.split(".")[2:]])
    for row, trial in zip(data.kinds, chosen, strict=True):
        config = trial.sites
        assert dict(zip(data.sites, row, strict=True)) == {
            s: config.get(s, "shared") for s in data.sites
        }
    warm, cold = data.patched_probability
    assert all(v is None for v in cold) and data.relaxation_lambda[1] is None
    phases = studies[0].user_attrs["relaxation"]["phases"]
    phase = next(p for p in phases if p["lambda"] == data.relaxation_lambda[0])
    for gate, value in zip(data.gates, warm, strict=True):
        assert value == pytest.approx(1 - phase["probabilities"][gate]["shared"])


def test_fleet_totals(storage, data):
    fleet = data.fleet
    assert set(fleet.tasks) == {"pets", "pets-cold", EVIL} and fleet.missing == ("just-started",)
    picked = {
        s.study_name: selected_trial(s) for s in (load_study(n, storage) for n in fleet.tasks)
    }
    assert fleet.total_patch_bytes == sum(t.patch_bytes for t in picked.values())
    # Like against like: the full detectors of the tasks that have a selected patch.
    assert fleet.total_full_bytes == sum(
        p.meta.full_bytes for p in data.studies if p.name in fleet.tasks
    )
    assert fleet.saving == pytest.approx(fleet.total_full_bytes / fleet.total_patch_bytes)
    strict = dashboard_data(storage, "min-map=0.99").fleet
    assert strict.tasks == () and set(strict.missing) == {*fleet.tasks, "just-started"}
    empty = next(p for p in data.studies if p.name == "just-started")
    assert empty.scatter.points == () and empty.scatter.selected is None
    assert empty.site_bytes.note == "no selected trial"
    row = data.placement.tasks.index("just-started")
    assert all(k is None for k in data.placement.kinds[row])


def test_across_tasks_lays_out_the_report(storage, data):
    report = fleet_report(storage)
    across = across_tasks(report)
    assert across.rule == report.rule == "answer"
    assert across.header[2:4] == ("head", "full") and across.header[4] == "answer"
    assert [row[0].text for row in across.rows] == [r.study for r in report.rows]
    # Easiest first; the study without trials has no difficulty and comes last.
    known = [r.difficulty for r in report.rows if r.difficulty is not None]
    assert known == sorted(known) and len(known) == 3
    assert [c.text for c in across.rows[-1][:5]] == ["just-started", "-", "-", "-", "-"]
    for row, cells in zip(report.rows[:-1], across.rows[:-1], strict=True):
        study = load_study(row.study, storage)
        records = {r.number: r for r in trial_records(study)}
        full_bytes = study_meta(study).full_bytes
        head, full = row.techniques["head"], row.techniques["full"]
        assert (head.trial, full.trial) == (0, 1)  # the synthetic study's presets
        answer = study_answer(study)
        assert row.answer.trial == answer.trial and row.answer.map == answer.map
        for cell in (head, full, row.answer):
            record = records[cell.trial]
            assert (cell.map, cell.bytes) == (record.map, record.patch_bytes)
            assert cell.bytes_pct == pytest.approx(100 * cell.bytes / full_bytes)
        assert row.difficulty == pytest.approx(full.map - head.map)
        assert cells[4].hover == f"trial {answer.trial}, {answer.patch_bytes:,} bytes"
        assert cells[5].text == f"{100 * (row.answer.map - full.map):+.1f} (search)"
    rows = report.rows[:-1]
    assert [(p.study, p.difficulty, p.bytes_pct, p.map) for p in across.points] == [
        (r.study, r.difficulty, r.answer.bytes_pct, r.answer.map) for r in rows
    ]
    assert (across.rho, across.p_value) == (report.claims.rho, report.claims.p_value)
    assert across.rho is not None
    a, b, c, d = across.claims
    claims = report.claims
    assert a.startswith("(a)") and f"in {claims.search_wins} of {claims.compared} " in a
    assert b.startswith("(b)") and f"{claims.mean_bytes_pct:.1f} %" in b
    assert f"{claims.max_bytes_pct:.1f} %" in b
    assert c.startswith("(c)") and f"{claims.rho:.2f} (p = {claims.p_value:.3g}" in c
    assert d.startswith("(d)") and "in 0 studies" in d
    assert across.notes == claims.notes and all("just-started" in n for n in across.notes)
    # The dashboard computes the same record from the studies it loaded.
    assert data.across == across


def test_across_tasks_when_nothing_is_selected(storage):
    report = fleet_report(storage, "min-map=0.99")
    across = across_tasks(report)
    assert len(across.rows) == 4 and all(r.answer is None for r in report.rows)
    assert across.points == () and across.rho is None and across.p_value is None
    assert "not computed" in across.claims[2] and "take - % of" in across.claims[1]
    left_out = [n for n in across.notes if "left out of (b), (c) and (d)" in n]
    assert {n.split(": no answer")[0] for n in left_out} == {r.study for r in report.rows}
    assert difficulty_figure(across) is None


def test_scatter_hover_holds_each_trials_values_and_says_the_rest_once(data):
    scatter = next(p.scatter for p in data.studies if p.name == "pets")
    fig = scatter_figure(scatter)
    searched = next(t for t in fig.data if t.name == "sampler")
    shown = {p.number: p for p in scatter.points}
    for number, ap50, summary, kib, *more in searched.customdata:
        p = shown[number]
        assert (ap50, summary, kib, more) == (
            round(p.map50, 3),
            p.summary,
            round(p.bytes / 1024, 1),
            [],
        )
    assert searched.hovertemplate.count("source: sampler") == 1
    # A trace whose trials differ in source, preset or recorded AP50 carries them per trial.
    mixed = [
        TrialPoint(3, 0.5, 0.8, 2048, "bn x1", "sampler", None, True),
        TrialPoint(4, 0.6, None, 4096, "<b>x</b>", "retry", "head", False),
    ]
    rows, template = _trial_hover(mixed)
    assert rows == [
        [3, " (AP50 0.800)", "bn x1", 2.0, "sampler", ""],
        [4, "", "&lt;b&gt;x&lt;/b&gt;", 4.0, "retry", "<br>preset: head"],
    ]
    assert template == (
        "trial %{customdata[0]}: mAP %{y:.4f}%{customdata[1]}<br>%{x:,} bytes "
        "(%{customdata[3]:,.1f} KiB)<br>%{customdata[2]}<br>source: %{customdata[4]}"
        "%{customdata[5]}<extra></extra>"
    )


def test_hypervolume_lines_keep_the_points_where_the_front_grew(data):
    assert _steps([1, 2, 3, 4], [0.1, 0.1, 0.1, 0.1]) == ([1, 4], [0.1, 0.1])
    fig = hypervolume_figure(data.hypervolume)
    for series, trace in zip(data.hypervolume, fig.data, strict=True):
        assert trace.line.shape == "hv" and len(trace.x) <= len(series.trials)
        if not series.trials:  # a study without a completed trial
            continue
        assert trace.x[-1] == series.trials[-1]
        # Drawn as steps, the kept points give the hypervolume after every trial.
        for x, hv in zip(series.trials, series.hypervolume, strict=True):
            last = max(i for i, kept in enumerate(trace.x) if kept <= x)
            assert trace.y[last] == hv


def test_difficulty_figure_titles_rho_and_escapes_names(data):
    fig = difficulty_figure(data.across)
    title = fig.layout.title.text
    assert f"ρ = {data.across.rho:.2f}" in title and f"p = {data.across.p_value:.3g}" in title
    labels = list(fig.data[0].text)
    assert len(labels) == len(data.across.points) == 3
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in labels and EVIL not in labels


# -- the page ----------------------------------------------------------------------------------
def test_page_escapes_study_strings(page):
    text = page.read_text(encoding="utf-8")
    assert "<script>alert(1)" not in text and EVIL_CLASS not in text
    assert "<h2>&lt;script&gt;alert(1)&lt;/script&gt;</h2>" in text
    assert "&lt;b&gt;&amp;&lt;/b&gt;" in text  # a failed trial's error
    blocks = re.findall(
        r'<script type="application/json" class="plot-data"([^>]*)>(.*?)</script>', text, re.S
    )
    # Drawn at load: the views across studies; each task's figures when it is shown.
    eager = [block for attrs, block in blocks if "data-deferred" not in attrs]
    assert eager and len(eager) == int(re.search(r'data-plots-expected="(\d+)"', text)[1])
    # Per study its scatter, and its bytes per site where its tensors are stored.
    assert len(blocks) - len(eager) == 4 + 2
    blocks = [block for _, block in blocks]
    names = set()
    for block in blocks:
        assert not set("<>&") & set(block)
        fig = json.loads(block)
        names.update(str(t.get("name")) for t in fig["data"])
        names.update(str(y) for t in fig["data"] for y in (t.get("y") or []))
    # Plotly reads tags in its text: the name reaches it with its tags as entities.
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in names
    assert EVIL not in names


def test_many_studies_are_chosen_from_a_list_and_share_what_the_page_holds_once(fleet):
    from plotly.offline import get_plotlyjs

    text = fleet["page"].read_text(encoding="utf-8")
    options = re.findall(r'<option value="([^"]*)">', text)
    assert [html.unescape(o) for o in options] == sorted(fleet["names"])
    sections = _task_sections(text)
    assert sorted(sections) == sorted(fleet["names"])
    # Without script, the first is shown: the page opens on it.
    assert [n for n, section in sections.items() if not _hidden(section)] == ["task-00"]
    assert "<b>ü</b>" not in text and "&lt;b&gt;ü&lt;/b&gt;" in text
    # The views across studies are as many figures as with one study; each study adds its own,
    # drawn when chosen: its scatter, and its bytes per site where its tensors are stored.
    eager, deferred = _blocks(text)
    alone_eager, alone_deferred = _blocks(fleet["alone"])
    assert (
        len(eager) == len(alone_eager) == int(re.search(r'data-plots-expected="(\d+)"', text)[1])
    )
    assert (len(deferred), len(alone_deferred)) == (FLEET + 2, 2)
    # plotly.js and the figures' template are written once, whatever the number of studies:
    # 35 studies take less than a tenth more than one.
    assert text.count(get_plotlyjs()[:2000]) == 1
    assert text.count('class="plot-template"') == 1
    assert not any('"template"' in block for block in eager + deferred)
    assert len(text) < 1.1 * len(fleet["alone"])


def test_script_json_cannot_close_the_block():
    raw = json.dumps({"name": "</script><script>x()</script>&"})
    safe = script_json(raw)
    assert "</" not in safe and "<" not in safe and json.loads(safe) == json.loads(raw)


def test_across_section_escapes_study_names_and_notes(page, report_page, storage, tmp_path):
    for written in (page, report_page):
        section = _across(written.read_text(encoding="utf-8"))
        assert "<td>&lt;script&gt;alert(1)&lt;/script&gt;</td>" in section
        assert EVIL not in section and 'class="plot"' in section
    # Nothing selected: each study is left out of (b), (c) and (d) by a note that names it.
    strict = write_report_html(fleet_report(storage, "min-map=0.99"), tmp_path / "strict.html")
    text = strict.read_text(encoding="utf-8")
    section = _across(text)
    assert "<li>&lt;script&gt;alert(1)&lt;/script&gt;: no answer" in section
    assert "<script>alert(1)" not in text
    assert 'data-plots-expected="0"' in text and "No study has both" in section


@pytest.mark.parametrize("which", ["page", "report_page"])
def test_page_is_self_contained(which, request):
    text = request.getfixturevalue(which).read_text(encoding="utf-8")
    assert not re.search(r"<script[^>]*\bsrc=", text)
    assert not re.search(r"<link[^>]*\bhref=", text)
    assert "Plotly.newPlot" in text and len(text) > 3_000_000  # plotly.js inlined, once
    # The error catcher, plotly.js and the drawing script; the rest is JSON, never run.
    assert text.count("<script") == 3 + text.count('<script type="application/json"')
    assert text.count('class="plot-template"') == 1  # the figures' shared template, once


def test_write_report_html_refuses_bad_paths_and_writes_whole(storage, tmp_path, monkeypatch):
    report = fleet_report(storage)
    with pytest.raises(UserError, match="folder, not a file"):
        write_report_html(report, tmp_path)
    with pytest.raises(UserError, match="folder not found"):
        write_report_html(report, tmp_path / "missing" / "report.html")
    out = tmp_path / "report.html"
    out.write_text("old", encoding="utf-8")
    assert write_report_html(report, str(out)) == out
    assert out.read_text(encoding="utf-8").startswith("<!DOCTYPE html>")
    assert [p.name for p in tmp_path.iterdir()] == ["report.html"]  # nothing left beside it

    # A write that fails before the rename leaves the previous page whole, and nothing beside.
    out.write_text("old", encoding="utf-8")

    def refuse(src, dst):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr("spotpatch._files.os.replace", refuse)
    with pytest.raises(UserError, match="cannot write .*No space left"):
        write_report_html(report, out)
    assert out.read_text(encoding="utf-8") == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["report.html"]


# -- the CLI and the server --------------------------------------------------------------------
def test_cli_writes_the_file_and_reports_errors(url, tmp_path, capsys):
    out = tmp_path / "d.html"
    assert main(["dashboard", "--storage", url, "--out", str(out)]) == 0
    assert out.is_file() and "wrote the dashboard" in capsys.readouterr().out
    cases = [
        ["--storage", url, "--out", str(tmp_path / "missing" / "d.html")],
        ["--storage", url, "--out", str(tmp_path)],
        ["--storage", f"sqlite:///{tmp_path / 'empty.db'}", "--out", str(out)],
        ["--storage", url, "--out", str(out), "--select", "bogus"],
        ["--storage", url, "--out", str(out), "--port", "1"],
    ]
    for args in cases:
        assert main(["dashboard", *args]) == 2
        err = capsys.readouterr().err
        assert err.startswith("spotpatch: error: ") and err.count("\n") == 1, args


def test_server_binds_loopback_and_serves_the_page(url):
    server = make_server(url, port=0)
    assert server.server_address[0] == HOST == "127.0.0.1"
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        base = f"http://{HOST}:{server.server_address[1]}"
        with urllib.request.urlopen(base + "/", timeout=30) as reply:
            body = reply.read().decode()
            assert reply.status == 200 and "text/html" in reply.headers["Content-Type"]
        assert "spotpatch dashboard" in body and "served live" in body
        with pytest.raises(urllib.error.HTTPError) as missing:
            urllib.request.urlopen(base + "/other", timeout=30)
        assert missing.value.code == 404
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=10)


def test_serve_command_stops_cleanly_on_ctrl_c(url):
    command = ["dashboard", "--storage", url, "--serve", "--port", "0"]
    proc = subprocess.Popen(
        [sys.executable, "-m", "spotpatch", *command],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        # A suite started in the background inherits an ignored SIGINT; Ctrl-C is the default.
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )
    try:
        line = proc.stdout.readline()
        served = re.search(r"http://127\.0\.0\.1:(\d+)/", line)
        assert served, line + proc.stderr.read()
        with urllib.request.urlopen(served[0], timeout=30) as reply:
            # Read the whole page: a client that hangs up mid-page leaves the server a reset.
            assert reply.status == 200 and reply.read()
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            os.kill(proc.pid, signal.SIGKILL)
    assert proc.returncode == 0, err
    assert "stopped the dashboard server" in out and "Traceback" not in err


# -- the drawing -------------------------------------------------------------------------------
@pytest.fixture
def chromium() -> str:
    binary = find_chromium()
    if binary is None:
        pytest.skip("no chromium on PATH: the drawing is unchecked (make test installs Debian's)")
    return binary


def test_page_draws_every_plot_in_headless_chromium(page, chromium):
    load = load_in_chromium(page, chromium=chromium, timeout=120)
    assert load.errors == ()
    assert load.plots_expected and load.plots_drawn == load.plots_expected
    assert "data-pwned" not in load.dom
    assert "<h2>&lt;script&gt;alert(1)&lt;/script&gt;</h2>" in load.dom
    # Without a task in the address, the list's first (by name) is shown and drawn.
    assert load.task_shown == EVIL and load.task_ms is not None
    # The Across tasks scatter is one of the plots drawn.
    assert "js-plotly-plot" in _across(load.dom) and "main-svg" in _across(load.dom)


def test_a_chosen_task_is_drawn_alone_in_headless_chromium(fleet, chromium):
    load = load_in_chromium(fleet["page"], task=ODD, chromium=chromium, timeout=120)
    assert load.errors == () and load.ok and load.task_shown == ODD
    eager, _ = _blocks(fleet["page"].read_text(encoding="utf-8"))
    # The views across studies and the chosen study's two figures; no other study's.
    assert load.plots_drawn == len(eager) + 2 and load.task_ms is not None
    sections = _task_sections(load.dom)
    drawn = [name for name, section in sections.items() if "main-svg" in section]
    shown = [name for name, section in sections.items() if not _hidden(section)]
    assert drawn == shown == [ODD] and len(sections) == FLEET


def test_report_page_draws_its_plot_in_headless_chromium(report_page, chromium):
    load = load_in_chromium(report_page, chromium=chromium, timeout=120)
    assert load.errors == ()
    assert load.plots_expected == load.plots_drawn == 1
    section = _across(load.dom)
    assert "main-svg" in section and "data-pwned" not in load.dom
    assert "<td>&lt;script&gt;alert(1)&lt;/script&gt;</td>" in section


def test_browser_check_sees_a_broken_plot(page, tmp_path, chromium):
    broken = tmp_path / "broken.html"
    text = page.read_text(encoding="utf-8")
    broken.write_text(re.sub(r'(data-target="plot-0"[^>]*>)', r"\1{", text, count=1))
    load = load_in_chromium(broken, chromium=chromium, timeout=120)
    assert load.errors and not load.ok
    assert load.plots_drawn == load.plots_expected - 1
