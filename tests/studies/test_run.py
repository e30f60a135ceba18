"""Studies end to end on the embedded default (SQLite, local) and on a local Ray."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import optuna
import pytest

from spotpatch.cli import main
from spotpatch.search import spotpatch_study_names, trial_records
from spotpatch.studies import (
    evaluator_of,
    load_spec,
    load_study,
    open_storage,
    run_studies,
    run_study,
)


@pytest.fixture
def study_file(bench_study, tmp_path):
    """A bundled study at a tiny budget, on a storage of its own, without a warm start."""

    def make(name="glyphs", warm="none", search=None, **changes):
        return bench_study(
            tmp_path / f"{name}.toml",
            name,
            train={"steps": 6, "batch_size": 8},
            search={
                "presets": (),
                "warm_start": warm,
                "storage": f"sqlite:///{tmp_path}/s.db",
                **(search or {}),
            },
            **changes,
        )

    return make


def test_a_local_study_runs_and_resumes(study_file, tmp_path, capsys):
    spec = study_file(warm="relaxation")
    state = run_study(spec, trials=3, progress=False)
    assert state.done == 3 and state.failed == 0
    storage = open_storage(f"sqlite:///{tmp_path}/s.db")
    study = load_study("glyphs", storage)
    first = [(t.number, t.datetime_complete) for t in study.trials if t.datetime_complete]
    assert len(first) == 3  # the relaxation may have queued more configs than that
    relaxation = study.user_attrs["relaxation"]
    assert relaxation["phases"] and relaxation["seconds"] > 0
    sources = [t.user_attrs.get("source") for t in study.trials]
    assert sources[0] == "relaxation"
    # Resuming with a larger total runs only the new trials.
    assert main(["run", str(spec), "--trials", "4"]) == 0
    study = load_study("glyphs", storage)
    assert [(t.number, t.datetime_complete) for t in study.trials[:3]] == first
    assert sum(t.datetime_complete is not None for t in study.trials) == 4
    assert study.user_attrs["relaxation"] == relaxation  # the warm start ran once
    assert main(["status", "--storage", f"sqlite:///{tmp_path}/s.db", "--json"]) == 0
    out = capsys.readouterr().out
    status = json.loads(out[out.index("[") :])
    assert status[0]["name"] == "glyphs" and status[0]["done"] == 4
    # The study opens as it is with Optuna's own API.
    plain = optuna.load_study(study_name="glyphs", storage=f"sqlite:///{tmp_path}/s.db")
    assert len(plain.best_trials) >= 1 and plain.metric_names == ["map", "patch_bytes"]


def test_a_study_with_another_space_is_refused(study_file, tmp_path, capsys):
    spec = study_file()
    run_study(spec, trials=1, progress=False)
    study_file(space={"granularity": "stage"})
    assert main(["run", str(spec), "--trials", "2"]) == 2
    assert "already exists with another granularity" in capsys.readouterr().err


@pytest.mark.parametrize(
    "case",
    [
        "storage folder missing",
        "storage folder a file",
        "artifacts a file",
        "artifacts under a file",
    ],
)
def test_a_folder_a_run_cannot_write_to_is_refused_before_anything_is_written(
    study_file, tmp_path, capsys, case
):
    (tmp_path / "afile").write_text("not a folder")
    good = study_file("shapes-subset")  # checked first and fine: nothing of it is written either
    search = {
        "storage folder missing": {"storage": f"sqlite:///{tmp_path}/nowhere/s.db"},
        "storage folder a file": {"storage": f"sqlite:///{tmp_path}/afile/s.db"},
        "artifacts a file": {"artifacts": tmp_path / "afile"},
        "artifacts under a file": {"artifacts": tmp_path / "afile" / "patches"},
    }[case]
    bad = study_file(search=search)
    message = {
        "storage folder missing": f"storage folder not found: {tmp_path}/nowhere (storage "
        f"sqlite:///{tmp_path}/nowhere/s.db)",
        "storage folder a file": f"storage folder {tmp_path}/afile is a file, not a folder",
        "artifacts a file": f"artifact folder {tmp_path}/afile is a file, not a folder",
        "artifacts under a file": f"cannot make the artifact folder {tmp_path}/afile/patches: "
        f"{tmp_path}/afile is a file",
    }[case]
    before = sorted(tmp_path.rglob("*"))
    capsys.readouterr()
    assert main(["run", str(good), str(bad), "--trials", "1"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("spotpatch: error: ") and message in err, err
    assert sorted(tmp_path.rglob("*")) == before


def test_every_preset_runs_whatever_the_granularity(study_file, tmp_path):
    # lora4 and tail are no gate decision of a block-granularity space: they run as they are.
    spec = study_file(search={"presets": ("lora4", "tail")})
    state = run_study(spec, trials=2, progress=False)
    assert state.done == 2 and state.failed == 0
    space = evaluator_of(load_spec(spec), progress=False).space
    assert space.granularity == "block" and not space.expresses(space.preset("lora4"))
    study = load_study("glyphs", open_storage(f"sqlite:///{tmp_path}/s.db"))
    records = trial_records(study)
    assert [(r.source, r.preset) for r in records] == [("preset", "lora4"), ("preset", "tail")]
    for r in records:
        assert r.config == space.preset(r.preset)
        assert r.patch_bytes == space.patch_bytes(space.preset(r.preset))


def _complete(storage_url: str, name: str) -> list:
    """The study's completed trials (none before it exists)."""
    storage = open_storage(storage_url)
    if name not in spotpatch_study_names(storage):
        return []
    return [r for r in trial_records(load_study(name, storage)) if r.complete]


def test_studies_share_two_workers_and_resume_after_a_kill(study_file, tmp_path):
    url = f"sqlite:///{tmp_path}/s.db"
    # One warm-started study with presets, one cold: warm start, presets and trials are work.
    files = [
        study_file("glyphs", warm="relaxation", search={"presets": ("head",)}),
        study_file("shapes-subset"),
    ]
    names = ["glyphs", "shapes-subset"]
    # A run of both on two workers, killed (driver and workers) while it trains...
    cmd = [sys.executable, "-m", "spotpatch", "run", *map(str, files), "--trials", "4"]
    proc = subprocess.Popen([*cmd, "--workers", "2"], start_new_session=True, cwd=tmp_path)
    deadline = time.monotonic() + 300
    while sum(len(_complete(url, n)) for n in names) < 3 and time.monotonic() < deadline:
        time.sleep(0.5)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    done_before = {n: {r.number for r in _complete(url, n)} for n in names}
    assert sum(map(len, done_before.values())) >= 3
    # ... resumes where it stopped, and each study ends at its total.
    states = run_studies(files, trials=4, workers=2, progress=False)
    assert list(states) == names
    for name, state in states.items():
        assert (state.done, state.failed, state.running) == (4, 0, 0)
        complete = _complete(url, name)
        assert len(complete) == 4  # none went over
        assert done_before[name] <= {r.number for r in complete}  # none lost
        records = trial_records(load_study(name, open_storage(url)))
        left = {r.number for r in records if r.retried}
        # Every stopped trial's config ran again, or its retry found that config trained
        # already (the worker was killed while it asked, before the duplicate was told), or
        # its retry waits in the queue behind the warm start's configs, which reached the
        # total first (a run with a larger total runs it).
        again = {r.retry_of for r in records if r.complete or r.duplicate_of is not None}
        queued = {r.retry_of for r in records if r.state == optuna.trial.TrialState.WAITING}
        assert left <= again | queued
    glyphs = trial_records(load_study("glyphs", open_storage(url)))
    assert glyphs[0].preset == "head" and {r.source for r in glyphs} >= {"preset", "relaxation"}


class _FailsFirst:
    """A worker's evaluator whose first trial raises (the spec's seed is trial 0's seed)."""

    def __init__(self, spec_path: str):
        from spotpatch.studies import load_spec
        from spotpatch.testing._spec_standin import stand_in_for

        self.spec = load_spec(spec_path)
        self.inner = stand_in_for(self.spec)  # the spec's space, scored in milliseconds
        self.space = self.inner.space

    def evaluate(self, config, *, seed, **options):
        if seed == self.spec.seed:
            raise RuntimeError("the worker ran out of luck")
        return self.inner.evaluate(config, seed=seed, **options)


def _no_evaluator():
    raise AssertionError("the driver does not score trials on Ray")


def _fails_first(spec_path: str) -> _FailsFirst:
    return _FailsFirst(spec_path)


@pytest.mark.ray
def test_a_trial_failing_on_ray_is_recorded_with_its_error_and_asked_again(
    study_file, tmp_path, local_ray
):
    import functools
    import sys

    import ray.cloudpickle

    from spotpatch.search import StudyRun, run_on_ray
    from spotpatch.studies import open_controller
    from spotpatch.testing._spec_standin import stand_in_for

    # Ray workers cannot import this test module by name: ship its code with the factory.
    ray.cloudpickle.register_pickle_by_value(sys.modules[__name__])
    spec_path = study_file("shapes-subset")
    spec = load_spec(spec_path)
    controller = open_controller(spec, stand_in_for(spec))
    states = run_on_ray(
        [StudyRun(controller, 2, _no_evaluator, seed=spec.seed)],
        [functools.partial(_fails_first, str(spec_path))],
        workers=1,
    )
    state = states["shapes-subset"]
    assert state.failed == 0 and state.done == 2
    study = load_study("shapes-subset", open_storage(f"sqlite:///{tmp_path}/s.db"))
    first, *rest = trial_records(study)
    assert first.state == optuna.trial.TrialState.FAIL and first.retried
    assert first.error == "RuntimeError: the worker ran out of luck"
    assert [r.complete for r in rest] == [True, True]
    assert [r.retry_of for r in rest].count(first.number) == 1


_ORPHAN = """
import multiprocessing, sys, time
from pathlib import Path

def child(out):
    from spotpatch.studies._run import stop_with_parent
    stop_with_parent(every=0.1)
    Path(out + ".started").write_text("")
    try:
        time.sleep(60)
    except KeyboardInterrupt:
        Path(out).write_text("interrupted")

if __name__ == "__main__":
    p = multiprocessing.get_context("spawn").Process(target=child, args=(sys.argv[1],))
    p.start()
    p.join()
"""


def test_a_worker_stops_when_its_driver_is_killed(tmp_path):
    script, out = tmp_path / "driver.py", tmp_path / "child"
    script.write_text(_ORPHAN)
    driver = subprocess.Popen([sys.executable, str(script), str(out)])
    try:
        deadline = time.monotonic() + 60
        while not (tmp_path / "child.started").exists() and time.monotonic() < deadline:
            time.sleep(0.1)
        driver.send_signal(signal.SIGKILL)  # no handler runs: the worker must notice itself
        driver.wait()
        while not out.exists() and time.monotonic() < deadline:
            time.sleep(0.1)
        assert out.read_text() == "interrupted"
    finally:
        driver.kill()
