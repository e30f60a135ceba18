"""A soak test of local worker processes sharing one SQLite study: hundreds of trials scored by
a stand-in evaluator that fails at random, while the test kills workers (SIGKILL) at random and
starts new ones. Nothing may be lost, nothing finished may have run twice."""

from __future__ import annotations

import itertools
import multiprocessing
import multiprocessing.forkserver
import os
import random
import shutil
import tempfile
import time
from pathlib import Path

import optuna
import pytest

from spotpatch.search import MAX_ATTEMPTS, trial_record, trial_records
from spotpatch.studies import open_storage
from spotpatch.testing import STAND_IN_ERROR, evaluation_counts, stand_in_worker

pytestmark = pytest.mark.soak

S = optuna.trial.TrialState
TRIALS, WORKERS, KILLS = 150, 4, 16
FAIL_RATE = 0.03
SEED = 1000  # trial n trains with seed SEED + n: the evaluation logs name trials by it
PRELOAD = [
    "spotpatch.testing",
    "spotpatch.search",
    "spotpatch.studies",
    "optuna.storages._rdb.models",
    "sqlalchemy.dialects.sqlite.pysqlite",
    "alembic.command",
    "alembic.config",
    "alembic.migration",
    "alembic.script",
]


@pytest.fixture
def folder():
    """A folder in memory where there is one (SQLite commits there cost no disk flush)."""
    shm = Path("/dev/shm")
    where = shm if shm.is_dir() and os.access(shm, os.W_OK) else None
    path = Path(tempfile.mkdtemp(prefix="spotpatch-soak-", dir=where))
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


def _running_pids(study) -> set[int]:
    running = study.get_trials(deepcopy=False, states=(S.RUNNING,))
    return {r.heartbeat["pid"] for r in map(trial_record, running) if r.heartbeat}


def _run_and_kill(folder: Path, url: str, study, rng: random.Random) -> float:
    """Run WORKERS processes until the study has its trials, killing one at KILLS random points
    of the run (counted in finished trials) and starting another in its place each time;
    returns the run's seconds."""
    context = multiprocessing.get_context("forkserver")
    # New workers fork from a process that has imported everything they use (opening a SQLite
    # storage included): they start at once.
    context.set_forkserver_preload(PRELOAD)
    incarnations = itertools.count()
    kill_at = sorted(rng.sample(range(2, TRIALS - 8), KILLS))

    def start() -> multiprocessing.Process:
        process = context.Process(
            target=stand_in_worker,
            args=(url, "soak", TRIALS),
            kwargs={
                "log_dir": str(folder),
                "artifacts": str(folder / "artifacts"),
                "sampler_seed": next(incarnations),  # a new process proposes its own configs
                "fail_rate": FAIL_RATE,
                "delay": (0.005, 0.05),
                "seed": SEED,
                "stale_after": 2.0,
            },
        )
        process.start()
        return process

    workers: list[multiprocessing.Process] = []
    started = time.monotonic()
    try:
        workers = [start() for _ in range(WORKERS)]
        while any(w.is_alive() for w in workers):
            assert time.monotonic() - started < 300, "the soak run did not finish in 300 s"
            time.sleep(0.3)
            if (
                not kill_at
                or len(study.get_trials(deepcopy=False, states=(S.COMPLETE,))) < kill_at[0]
            ):
                continue
            kill_at.pop(0)
            # Mostly a worker in the middle of a trial; else one wherever it is (asking,
            # telling, waiting for the lock, starting).
            busy = [i for i, w in enumerate(workers) if w.pid in _running_pids(study)]
            victim = rng.choice(busy if busy and rng.random() < 0.75 else range(WORKERS))
            workers[victim].kill()
            workers[victim].join()
            workers[victim] = start()
        assert not kill_at, "the study reached its total before every kill"
        assert [w.exitcode for w in workers] == [0] * WORKERS
        return time.monotonic() - started
    finally:
        for w in workers:
            if w.is_alive():
                w.kill()
                w.join()
        multiprocessing.forkserver._forkserver._stop()  # no public way to stop it


def test_workers_killed_at_random_lose_no_trial_and_run_none_twice(folder):
    url = f"sqlite:///{folder}/soak.db"
    storage = open_storage(url)
    study = optuna.create_study(
        study_name="soak", storage=storage, directions=["maximize", "minimize"]
    )
    seconds = _run_and_kill(folder, url, study, random.Random(0))

    records = trial_records(study)
    by_number = {r.number: r for r in records}
    evaluations = evaluation_counts(folder)
    trained = [r for r in records if r.complete]
    failed = [r for r in records if r.state == S.FAIL]
    raised = [r for r in failed if r.error.startswith(STAND_IN_ERROR)]
    killed = [r for r in failed if r.error.startswith("not finished:")]
    retried = [r for r in failed if r.retried]
    given_up = [r for r in failed if not r.retried]
    retries = {r.retry_of: r for r in records if r.retry_of is not None}
    # Nothing is left running or queued, and the study stopped at its total: every trial
    # that counts completed, unless its config failed MAX_ATTEMPTS times in a row.
    assert not [r.number for r in records if r.state in (S.RUNNING, S.WAITING)]
    assert sum(r.counts_toward_total() for r in records) == TRIALS
    assert len(trained) + len(given_up) == TRIALS
    for r in given_up:
        chain = [r]
        while chain[-1].retry_of is not None:
            chain.append(by_number[chain[-1].retry_of])
        assert len(chain) == MAX_ATTEMPTS and all(c.state == S.FAIL for c in chain)
    # Every failure is the evaluator's own or a killed worker's trial, and every failed
    # trial's config was asked again by exactly one later trial.
    assert sorted(r.number for r in raised + killed) == sorted(r.number for r in failed)
    lost = [r.number for r in retried if r.number not in retries]
    assert not lost, f"failed trials whose config was never asked again: {lost}"
    # A retry runs the whole config its failed trial was to run (what that one was queued
    # with, and what it suggested), even when its own worker stopped before suggesting it all.
    queued = {t.number: t.system_attrs.get("fixed_params") or {} for t in study.trials}
    for r in retried:
        retry = retries[r.number]
        assert retry.number > r.number
        assert {**queued[r.number], **r.params}.items() <= queued[retry.number].items()
        assert r.config is None or retry.config in (None, r.config)
    assert len(retries) == sum(r.source == "retry" for r in records)
    # Each trained trial was scored once, by one process; a duplicate trained nothing.
    twice = [r.number for r in trained if evaluations[SEED + r.number] != 1]
    assert not twice, f"finished trials scored more than once (or never): {twice}"
    for r in records:
        if r.duplicate_of is not None:
            assert evaluations[SEED + r.number] == 0 and by_number[r.duplicate_of].complete
    assert raised and killed, "the soak exercised no failure or no kill"
    print(
        f"\nsoak: {TRIALS} trials, {WORKERS} workers, {KILLS} kills, {len(raised)} exceptions, "
        f"{len(killed)} killed trials, {len(retried)} failed trials retried, "
        f"{len(trained)} complete, {len(given_up)} given up, {len(lost)} lost, "
        f"{len(twice)} run twice, {sum(evaluations.values())} evaluations, {seconds:.0f} s"
    )
