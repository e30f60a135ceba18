"""``confirm`` on a tiny real study: the selected patch and the full fine-tune retrained with new
seeds, stored in the study, resumed without retraining, and used by the report."""

from __future__ import annotations

import json
import statistics

import pytest

from spotpatch.cli import main
from spotpatch.search import confirm_runs, trial_records
from spotpatch.studies import (
    CONFIRM_SEED,
    confirm_study,
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


def test_confirm_retrains_stores_and_resumes(study):
    url, _ = study
    seen = []
    result = confirm_study(
        "glyphs", storage=url, seeds=2, on_run=lambda *a: seen.append(a), progress=False
    )
    assert [c.label for c in result.configs] == ["selected", "full"]
    assert [(label, seed) for label, seed, _ in seen] == [
        ("selected", CONFIRM_SEED),
        ("selected", CONFIRM_SEED + 1),
        ("full", CONFIRM_SEED),
        ("full", CONFIRM_SEED + 1),
    ]
    stored = load_study("glyphs", open_storage(url))
    records = {r.number: r for r in trial_records(stored)}
    selected, full = result.configs
    assert records[selected.trial].source != "preset" and records[full.trial].preset == "full"
    assert selected.patch_bytes == records[selected.trial].patch_bytes
    runs = confirm_runs(stored)
    assert [r.map for r in runs] == [m for _, _, m in seen]
    assert result.versus_full.delta == pytest.approx(
        statistics.fmean(selected.maps) - statistics.fmean(full.maps)
    )
    # Run again with one more seed: only the new seed trains.
    seen.clear()
    again = confirm_study(
        "glyphs", storage=url, seeds=3, on_run=lambda *a: seen.append(a), progress=False
    )
    assert [(label, seed) for label, seed, _ in seen] == [
        ("selected", CONFIRM_SEED + 2),
        ("full", CONFIRM_SEED + 2),
    ]
    assert again.configs[0].maps[:2] == selected.maps
    # The report's Δ is now the difference of the confirmed means.
    report = fleet_report(open_storage(url))
    row = report.rows[0]
    assert row.confirmed is not None and row.confirmed.seeds == 3
    assert row.delta_vs_full == pytest.approx(again.versus_full.delta)
    text = report_markdown(report)
    assert f"{100 * row.delta_vs_full:+.1f} ± {100 * row.confirmed.delta_sd:.1f} (3 seeds)" in text
    assert "retrainings with other seeds (`spotpatch confirm`) in 1 of 1 studies" in text


def test_confirm_command(study, capsys):
    url, spec = study
    assert main(["confirm", "glyphs", "--storage", url, "--seeds", "1", "--preset", "head",
                 "--json"]) == 0  # fmt: skip
    out = json.loads(capsys.readouterr().out)
    assert [c["label"] for c in out["configs"]] == ["selected", "full", "head"]
    assert "held" not in out  # no walk
    # Measured from the full fine-tune's trial: 100 points below it, the smallest searched.
    assert main(["confirm", "glyphs", "--storage", url, "--seeds", "1",
                 "--select", "within-full=100", "--json"]) == 0  # fmt: skip
    out = json.loads(capsys.readouterr().out)
    searched = [r for r in trial_records(load_study("glyphs", open_storage(url)))
                if r.complete and r.source != "preset"]  # fmt: skip
    smallest = min(searched, key=lambda r: (r.patch_bytes, r.number))
    assert out["configs"][0]["trial"] == smallest.number and out["rule"] == "within-full=100"
    assert main(["confirm", "glyphs", "--storage", url, "--seeds", "0"]) == 2
    assert "--seeds must be at least 1" in capsys.readouterr().err
    spec.unlink()
    assert main(["confirm", "glyphs", "--storage", url]) == 2
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
    assert not confirm_runs(load_study("glyphs", open_storage(url)))


def test_walk_retrains_larger_front_trials_until_one_holds(
    bench_study, tmp_path, monkeypatch, capsys
):
    from spotpatch._errors import UserError
    from spotpatch.search import FrontPoint, pareto_front
    from spotpatch.studies import _confirm, _run, evaluator_of, load_spec
    from spotpatch.studies._report import searched_trials
    from spotpatch.testing import StandInEvaluator

    url = f"sqlite:///{tmp_path}/s.db"
    spec = bench_study(
        tmp_path / "glyphs.toml",
        "glyphs",
        train={"steps": 2, "batch_size": 4},
        search={"presets": ("head", "full"), "warm_start": "none", "storage": url,
                "sampler": "random"},
    )  # fmt: skip
    real = evaluator_of(load_spec(spec), progress=False)

    class ByBytes(StandInEvaluator):
        """Trials and retrainings scored by bytes, in milliseconds: mAP ~ 0.8 * sqrt(bytes /
        full bytes) and a little noise, so larger is better; the rest is the real one's."""

        def __getattr__(self, name):
            return getattr(real, name)

    for module in (_run, _confirm):
        monkeypatch.setattr(module, "evaluator_of", lambda *a, **k: ByBytes(real.space))
    run_study(spec, trials=10, progress=False)
    with pytest.raises(UserError, match="--walk needs a within"):
        confirm_study("glyphs", storage=url, rule="knee", walk=True, progress=False)
    tolerance = 30.0
    result = confirm_study(
        "glyphs", storage=url, rule="within=100", seeds=2, walk=True, progress=False
    )
    records = {r.number: r for r in trial_records(load_study("glyphs", open_storage(url)))}
    front = pareto_front([FrontPoint(r.number, r.map, r.patch_bytes)
                          for r in searched_trials(list(records.values()))])  # fmt: skip
    # within=100 picks the smallest searched front trial, which holds at once.
    assert [c.label for c in result.configs] == ["selected", "full"]
    assert result.held == front[0].number == result.configs[0].trial
    assert result.to_json()["held"] == result.held
    # A tighter distance walks up the front from the rule's pick, in order, to the first
    # that holds.
    result = confirm_study(
        "glyphs", storage=url, rule=f"within={tolerance:g}", seeds=2, walk=True, progress=False
    )
    walked = [c for c in result.configs if c.label != "full"]
    start = [p.number for p in front].index(walked[0].trial)
    assert [c.trial for c in walked] == [p.number for p in front[start : start + len(walked)]]
    full = next(c for c in result.configs if c.label == "full")
    gaps = [100 * (c.mean - full.mean) for c in walked]
    assert all(g < -tolerance for g in gaps[:-1]) and len(walked) > 1
    if result.held is None:
        assert walked[-1].trial == front[-1].number and gaps[-1] < -tolerance
    else:
        assert result.held == walked[-1].trial and gaps[-1] >= -tolerance
        assert result.held_versus_full.delta == pytest.approx(gaps[-1] / 100)
    # The command says the same, from the stored runs (nothing retrains).
    capsys.readouterr()
    assert main(["confirm", "glyphs", "--storage", url, "--select", f"within={tolerance:g}",
                 "--seeds", "2", "--walk"]) == 0  # fmt: skip
    out = capsys.readouterr().out
    assert " seed " not in out  # no retraining
    if result.held is None:
        assert "no searched front trial was confirmed within" in out
    else:
        assert f"confirmed: trial {result.held}, " in out
