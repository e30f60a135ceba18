"""The demo: its study files are the benchmark's with the demo's budget, and the CLI runs its
steps, each printed first."""

from __future__ import annotations

from dataclasses import replace

from spotpatch.cli import main
from spotpatch.demo import (
    DEMO_SAMPLER,
    DEMO_STEPS,
    DEMO_TASKS,
    DEMO_TRIALS,
    demo_spec,
    demo_steps,
)
from spotpatch.studies import load_spec


def test_demo_specs_are_the_benchmark_specs_with_the_demo_budget(bench, tmp_path):
    assert list(DEMO_TASKS.values()) == ["near", "middle", "far"]
    out = tmp_path / "demo"
    out.mkdir()
    (out / "bench").symlink_to(bench, target_is_directory=True)
    storage = f"sqlite:///{out / 'spotpatch.db'}"
    spec = load_spec(demo_spec(out / "bench", "glyphs", out, storage))
    assert spec.path == out / "studies" / "glyphs.toml"
    assert (spec.train.steps, spec.search.trials) == (DEMO_STEPS, DEMO_TRIALS)
    assert spec.search.presets == ("head", "full") and spec.search.storage == storage
    assert spec.search.warm_start == "relaxation"
    assert spec.search.sampler == DEMO_SAMPLER == "neighbours"
    assert spec.data.train.is_file()
    # Nothing else changes: the same task, seed, base, space and search.
    bundled = load_spec(bench / "studies" / "glyphs.toml")
    assert replace(spec, path=bundled.path, train=bundled.train, search=bundled.search) == bundled
    assert replace(spec.train, steps=bundled.train.steps) == bundled.train
    assert (
        replace(
            spec.search,
            trials=bundled.search.trials,
            storage=bundled.search.storage,
            presets=bundled.search.presets,
            sampler=bundled.search.sampler,
        )
        == bundled.search
    )


def test_demo_steps_are_spotpatch_commands(bench, tmp_path, monkeypatch):
    monkeypatch.setattr("spotpatch.demo.ensure_benchmark", lambda out: bench)
    monkeypatch.setattr("spotpatch.demo.DEMO_TASKS", {"shapes-subset": "near", "glyphs": "far"})
    steps = demo_steps(tmp_path / "demo")
    out = (tmp_path / "demo").resolve()
    assert [s[0] for s in steps] == [
        "run",
        "run",
        "status",
        "dashboard",
        "export",
        "export",
        "bundle",
        "plan",
    ]
    assert steps[0] == ["run", str(out / "studies" / "shapes-subset.toml")]
    assert load_spec(steps[1][1]).name == "glyphs"
    assert all(f"sqlite:///{out / 'spotpatch.db'}" in s for s in steps[2:])


def test_the_demo_command_prints_each_step_then_runs_it(tmp_path, monkeypatch, capsys):
    bench = tmp_path / "b"
    steps = [["demo-data", str(bench), "--scale", "0.01", "--tasks", "glyphs"]]
    monkeypatch.setattr("spotpatch.demo.demo_steps", lambda out: steps)
    assert main(["demo", "--out", str(tmp_path / "demo")]) == 0
    out, err = capsys.readouterr()
    assert err.startswith(
        f"\n[demo 1/1] spotpatch demo-data {bench} --scale 0.01 --tasks glyphs\n"
    )
    assert "[demo] done in " in err and str(tmp_path / "demo" / "report.html") in err
    assert "wrote the bundled benchmark" in out and (bench / "studies" / "glyphs.toml").is_file()
    # A failing step stops the demo with its exit status.
    missing = ["status", "--storage", f"sqlite:///{tmp_path / 'missing.db'}"]
    monkeypatch.setattr("spotpatch.demo.demo_steps", lambda out: [missing])
    assert main(["demo", "--out", str(tmp_path / "demo")]) == 2
    assert "[demo] done" not in capsys.readouterr().err
