"""A fleet: `spotpatch run` of 35 study files at once, on local workers and on a local Ray,
scored by a stand-in evaluator (the studies' own spaces, milliseconds per trial). Every study
reaches its total and runs no trial twice, the progress output stays bounded, and `status`,
`report`, `plan` and `dashboard` cover every study."""

from __future__ import annotations

import functools
import json
import math
import os
import tempfile
import time
from dataclasses import replace
from pathlib import Path

import optuna
import pytest

from spotpatch.cli import main
from spotpatch.cli._trials import SUMMARY_EVERY
from spotpatch.search import trial_records
from spotpatch.studies import load_spec, load_study, open_storage, run_studies, write_spec
from spotpatch.testing import evaluation_counts
from spotpatch.testing._spec_standin import stand_in_for

S = optuna.trial.TrialState
STUDIES, TRIALS = 35, 1
TASKS = ("glyphs", "shapes-subset")


def _name(i: int) -> str:
    return f"{TASKS[i % 2]}-{i:02d}"


@pytest.fixture
def folder():
    """A folder in memory where there is one: SQLite commits there cost no disk flush (a
    stand-in trial is little else)."""
    memory = "/dev/shm" if os.access("/dev/shm", os.W_OK) else None
    with tempfile.TemporaryDirectory(prefix="spotpatch-fleet-", dir=memory) as path:
        yield Path(path)


@pytest.fixture
def fleet(bench, folder, monkeypatch):
    """35 study files in one storage (two tasks' data under 35 names, each its own seed), a
    trial each (the full fine-tune, queued as a preset: each study has an answer), and `run`
    scoring them with the stand-in, which logs every evaluation to ``evaluations/``. One
    trial each: opening 35 studies, in the driver and in each worker, is most of the time."""
    url = f"sqlite:///{folder}/fleet.db"
    files = []
    for i in range(STUDIES):
        spec = load_spec(bench / "studies" / f"{TASKS[i % 2]}.toml")
        search = {"presets": ("full",), "warm_start": "none", "repeats": 1, "confirm_seeds": 0}
        spec = replace(
            spec,
            name=_name(i),
            seed=1000 * i,  # trial n of study i trains with seed 1000 i + n: one log names both
            space=replace(spec.space, granularity="stage"),  # few gates: a quick ask
            search=replace(spec.search, storage=url, **search),
        )
        files.append(write_spec(spec, folder / f"{_name(i)}.toml"))
    logs = folder / "evaluations"
    logs.mkdir()
    stand_in = functools.partial(stand_in_for, log_dir=str(logs))
    monkeypatch.setattr(
        "spotpatch.studies.run_studies", functools.partial(run_studies, evaluator_for=stand_in)
    )
    monkeypatch.chdir(folder)
    return url, files, logs


def _check_run(url: str, logs, capsys, seconds: float) -> None:
    out, err = capsys.readouterr()
    names = [_name(i) for i in range(STUDIES)]
    # Every study reached its total, no trial failed or is left running, none ran twice.
    storage = open_storage(url)
    evaluations = evaluation_counts(logs)
    for i, name in enumerate(names):
        records = trial_records(load_study(name, storage))
        assert all(r.state == S.COMPLETE for r in records), (name, records)
        counted = [r for r in records if r.counts_toward_total()]
        assert len(counted) == TRIALS and all(r.complete for r in counted), (name, records)
        # A config proposed again is told the result it had, without training.
        trained = [0 if r.duplicate_of is not None else 1 for r in records]
        assert [evaluations[1000 * i + r.number] for r in records] == trained, (name, records)
    assert sum(evaluations.values()) == STUDIES * TRIALS
    # The progress: a line per study when it is done and a summary now and then, not a line
    # per trial; the last says every study is done. (Ray Tune logs a few lines of its own.)
    lines = err.splitlines()
    board = [line for line in lines if line.startswith((*names, "studies "))]
    assert len(board) <= STUDIES + 2 + math.ceil(seconds / SUMMARY_EVERY), err
    assert len(lines) - len(board) <= 5, err
    for name in names:
        assert sum(line.startswith(f"{name} ") for line in board) == 1, (name, err)
    everything = f"studies {STUDIES}/{STUDIES} done | trials {STUDIES * TRIALS}/{STUDIES * TRIALS}"
    assert board[-1].startswith(f"{everything} | "), err
    # The end of the run: a table of the studies' progress and one of their answers, each
    # row one line of its table's width.
    tables = _tables(out)
    for text in tables:
        rows = text.splitlines()
        assert len(rows) == STUDIES + 2 and len({len(r) for r in rows}) == 1, text
    done = f"{TRIALS}/{TRIALS}"
    assert [row.split()[:2] for row in tables[0].splitlines()[2:]] == [[n, done] for n in names]


def _check_commands(url: str, capsys) -> None:
    """Every command that reads the storage covers the 35 studies (what they read does not
    depend on the backend that ran the trials: checked once)."""
    names = [_name(i) for i in range(STUDIES)]
    assert main(["status", "--storage", url, "--json"]) == 0
    printed = capsys.readouterr().out
    status = json.loads(printed[printed.index("[") :])
    assert sorted(s["name"] for s in status) == sorted(names)
    assert all(s["done"] == TRIALS and s["answer"] is not None for s in status)
    budget = sum(s["answer"]["patch_bytes"] for s in status)  # every answer fits in it
    for command in (
        ["status", "--storage", url],
        ["report", "--storage", url],
        ["plan", "--storage", url, "--budget", str(budget)],
    ):
        assert main(command) == 0, command
        printed = capsys.readouterr().out
        assert all(name in printed for name in names), (command, printed)
    assert main(["dashboard", "--storage", url, "--out", "fleet.html"]) == 0
    html = open("fleet.html", encoding="utf-8").read()
    assert all(name in html for name in names)


def _tables(out: str) -> list[str]:
    """The two tables `run` prints last, split at their headers (Ray Tune prints a table of
    its own first)."""
    lines = out.splitlines()
    first, second = [i for i, line in enumerate(lines) if line.startswith("study ")][-2:]
    return ["\n".join(lines[first:second]), "\n".join(lines[second:])]


def test_35_studies_share_two_local_workers(fleet, capsys):
    url, files, logs = fleet
    started = time.monotonic()
    assert main(["run", *map(str, files), "--trials", str(TRIALS), "--workers", "2"]) == 0
    _check_run(url, logs, capsys, time.monotonic() - started)
    _check_commands(url, capsys)


@pytest.mark.ray
def test_35_studies_share_a_local_ray(fleet, capsys):
    import ray

    url, files, logs = fleet
    joined = ray.is_initialized()  # another test's Ray; else the run starts its own
    started = time.monotonic()
    command = ["run", *map(str, files), "--trials", str(TRIALS), "--backend", "ray"]
    assert main([*command, "--workers", "2"]) == 0
    assert ray.is_initialized() == joined  # a Ray the run started, it stopped
    _check_run(url, logs, capsys, time.monotonic() - started)
