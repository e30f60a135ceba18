"""Trials on a Ray cluster started apart, as a user starts one (`ray start --head`): a study run
by the command line joins it, and a trial whose Ray worker is killed is failed and retried."""

from __future__ import annotations

import contextlib
import functools
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import optuna
import pytest

from spotpatch.search import StudyController, StudyRun, make_sampler, run_on_ray, trial_records
from spotpatch.studies import artifact_store, load_study, open_storage
from spotpatch.testing import RayNode, ServerError, StandInEvaluator, synthetic_space

pytestmark = pytest.mark.ray

S = optuna.trial.TrialState
SEED = 100  # trial n trains with seed SEED + n
TOTAL = 3


@pytest.fixture(scope="module")
def ray_head():
    """A Ray head on this machine with 2 CPUs, started apart as docs/scaling.md says; yields the
    environment that finds it (``RAY_TMPDIR``: its folder, where `auto` looks) and the folder."""
    head = RayNode("127.0.0.1", cpus=2)
    try:
        head.start()
        yield head.env, head.folder
    except ServerError as e:
        pytest.fail(str(e), pytrace=False)
    finally:
        head.stop()


def test_a_study_run_joins_a_cluster_started_apart(ray_head, bench_study, tmp_path):
    env, folder = ray_head
    spec = bench_study(
        tmp_path / "glyphs.toml",
        "glyphs",
        train={"steps": 6, "batch_size": 8},
        search={"presets": (), "warm_start": "none", "storage": "sqlite:///s.db"},
    )
    cmd = [sys.executable, "-m", "spotpatch", "run", str(spec), "--trials", "2"]
    cmd += ["--backend", "ray", "--ray-address", "auto"]
    proc = subprocess.run(cmd, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    records = trial_records(load_study("glyphs", open_storage(f"sqlite:///{tmp_path}/s.db")))
    assert [r.state for r in records] == [S.COMPLETE, S.COMPLETE]
    assert all(r.complete and r.artifact_id for r in records)
    # The trials ran on that cluster: it logged the run as one of its drivers.
    drivers = list(Path(folder).glob("ray/session_*/logs/python-core-driver-*.log"))
    assert drivers, "the cluster saw no driver"


class _DiesOnFirst:
    """A worker's stand-in evaluator that, on trial 0, writes its process id and waits to be
    killed."""

    def __init__(self, folder: str):
        self.folder = Path(folder)
        self.inner = StandInEvaluator(synthetic_space(granularity="block"))
        self.space = self.inner.space

    def evaluate(self, config, *, seed, **options):
        if seed == SEED:
            (self.folder / "pid.tmp").write_text(str(os.getpid()))
            (self.folder / "pid.tmp").rename(self.folder / "pid")
            time.sleep(300)
        return self.inner.evaluate(config, seed=seed, **options)


def _dies_on_first(folder: str) -> _DiesOnFirst:
    return _DiesOnFirst(folder)


def _no_evaluator():
    raise AssertionError("the driver does not score trials on Ray")


def _kill_when_the_rest_finished(folder: Path, url: str, killed: list[int]) -> None:
    """Kill trial 0's worker once the other trials have finished: the run would be over but
    for trial 0, and must go on for its retry."""
    storage = open_storage(url)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        finished = [r for r in trial_records(load_study("soak", storage)) if r.complete]
        if (folder / "pid").exists() and len(finished) >= TOTAL - 1:
            break
        time.sleep(0.2)
    with contextlib.suppress(FileNotFoundError, ProcessLookupError, ValueError):
        pid = int((folder / "pid").read_text())
        os.kill(pid, signal.SIGKILL)
        killed.append(pid)


def test_a_trial_whose_ray_worker_is_killed_is_failed_and_retried(ray_head, tmp_path, monkeypatch):
    import ray.cloudpickle

    # Ray workers cannot import this test module by name: ship its code with the factory.
    ray.cloudpickle.register_pickle_by_value(sys.modules[__name__])
    env, _ = ray_head
    monkeypatch.setenv("RAY_TMPDIR", env["RAY_TMPDIR"])
    monkeypatch.delenv("RAY_AUTH_MODE", raising=False)  # joining sets it: undone at the end
    storage = open_storage(f"sqlite:///{tmp_path}/s.db")
    optuna.create_study(study_name="soak", storage=storage, directions=["maximize", "minimize"])
    controller = StudyController(
        storage,
        "soak",
        synthetic_space(granularity="block"),
        sampler=make_sampler("random", 0),
        artifact_store=artifact_store(tmp_path / "artifacts"),
    )
    killed: list[int] = []
    killer = threading.Thread(
        target=_kill_when_the_rest_finished,
        args=(tmp_path, f"sqlite:///{tmp_path}/s.db", killed),
        daemon=True,
    )
    killer.start()
    states = run_on_ray(
        [StudyRun(controller, TOTAL, _no_evaluator, seed=SEED)],
        [functools.partial(_dies_on_first, str(tmp_path))],
        address="auto",
        workers=2,
    )
    killer.join(timeout=10)
    assert killed, "trial 0's worker never started"
    assert states["soak"].done == TOTAL and states["soak"].failed == 0
    records = trial_records(controller.study)
    first = records[0]
    assert first.state == S.FAIL and first.retried
    assert first.error == "not finished: its Ray worker died (see Ray's logs)"
    (retry,) = [r for r in records if r.retry_of == 0]
    assert retry.complete and retry.params == first.params and retry.config == first.config
    assert sum(r.complete for r in records) == TOTAL
    assert not [r for r in records if r.state in (S.RUNNING, S.WAITING)]
