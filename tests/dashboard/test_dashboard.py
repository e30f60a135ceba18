"""The dashboard on synthetic studies (no training): its records, the page, the report's page,
the server, the CLI and, where Chromium is installed, the drawing in a headless browser."""

from __future__ import annotations

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
    site_bytes,
    trials_scatter,
    write_dashboard,
    write_report_html,
)
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
    blocks = re.findall(r'<script type="application/json"[^>]*>(.*?)</script>', text, re.S)
    assert blocks and len(blocks) == int(re.search(r'data-plots-expected="(\d+)"', text)[1])
    names = set()
    for block in blocks:
        assert not set("<>&") & set(block)
        fig = json.loads(block)
        names.update(str(t.get("name")) for t in fig["data"])
        names.update(str(y) for t in fig["data"] for y in (t.get("y") or []))
    # Plotly reads tags in its text: the name reaches it with its tags as entities.
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in names
    assert EVIL not in names


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
    assert text.count("<script") == 3 + int(re.search(r'data-plots-expected="(\d+)"', text)[1])


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
    # The Across tasks scatter is one of the plots drawn.
    assert "js-plotly-plot" in _across(load.dom) and "main-svg" in _across(load.dom)


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
    broken.write_text(text.replace('data-target="plot-0">', 'data-target="plot-0">{', 1))
    load = load_in_chromium(broken, chromium=chromium, timeout=120)
    assert load.errors and not load.ok
    assert load.plots_drawn == load.plots_expected - 1
