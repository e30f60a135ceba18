"""``confirm`` on a tiny real study: the answer and the full fine-tune retrained with seeds no
trial used, stored as the study's trials, resumed without retraining, used by the report; and
refused, before training, where the study or its storage cannot take it. The confirmation's
logic, with known scores, is tested in ``test_answer``."""

from __future__ import annotations

import pytest

from spotpatch.cli import main
from spotpatch.search import study_answer, trial_records
from spotpatch.studies import (
    fleet_report,
    load_study,
    open_storage,
    report_markdown,
    run_study,
)


@pytest.fixture
def study(bench_study, tmp_path):
    url = f"sqlite:///{tmp_path}/s.db"
    spec = bench_study(
        tmp_path / "glyphs.toml",
        "glyphs",
        train={"steps": 4, "batch_size": 8},
        search={"presets": ("head", "full"), "warm_start": "none", "storage": url},
    )
    run_study(spec, trials=3, progress=False)
    return url, spec


def test_confirm_command_on_a_real_study(study, capsys):
    url, spec = study
    assert main(["confirm", "glyphs", "--storage", url, "--seeds", "1"]) == 0
    out = capsys.readouterr().out
    stored = load_study("glyphs", open_storage(url))
    runs = [r for r in trial_records(stored) if r.confirmed]
    stages = {r.confirm_stage for r in runs}
    assert "report" in stages <= {"decide", "report"} and "answer: trial" in out
    assert all(r.artifact_id is None for r in runs)  # numbers, not patches to ship
    answer = study_answer(stored)
    assert answer.confirmation.state == "done" and answer.confirmation.reported.seeds == 1
    # Run again: everything is stored, nothing trains; the report shows the fresh Δ.
    assert main(["confirm", "glyphs", "--storage", url, "--seeds", "1"]) == 0
    assert " seed " not in capsys.readouterr().out
    row = fleet_report(open_storage(url)).rows[0]
    assert row.confirmed == answer.confirmation.reported
    assert "(1 paired seed)" in report_markdown(fleet_report(open_storage(url)))
    # The study holds its spec: with the study file deleted, confirm still retrains.
    spec.unlink()
    assert main(["confirm", "glyphs", "--storage", url, "--seeds", "2"]) == 0
    assert "seed 2000001" in capsys.readouterr().out
    # A study of an earlier version recorded the file's path only.
    from dataclasses import replace

    from spotpatch.search import study_meta, write_study_meta

    write_study_meta(stored, replace(study_meta(stored), spec_text=None))
    assert main(["confirm", "glyphs", "--storage", url, "--seeds", "2"]) == 2
    assert "is gone" in capsys.readouterr().err


def test_confirm_refuses_a_storage_it_cannot_write_before_training(study, capsys, monkeypatch):
    from spotpatch.studies import _storage

    url, _ = study

    def read_only(*args, **kwargs):
        raise PermissionError(30, "Read-only file system")

    # A folder on a read-only mount: no new file can be made there.
    monkeypatch.setattr(_storage.tempfile, "mkstemp", read_only)
    assert main(["confirm", "glyphs", "--storage", url, "--seeds", "1"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "storage folder" in err, err
    monkeypatch.undo()
    records = trial_records(load_study("glyphs", open_storage(url)))
    assert not [r for r in records if r.confirm_stage is not None]
