"""Several drivers on one study through a real PostgreSQL server that these tests start.

The server is Debian's PostgreSQL (``make test`` installs the ``postgresql`` package when its
binaries are missing), started by ``spotpatch.testing.PostgresServer``: initialized in a
temporary folder, listening on 127.0.0.1 only at a free port, stopped when the session ends.
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from spotpatch.cli import main
from spotpatch.search import spotpatch_study_names, trial_records
from spotpatch.studies import load_study, open_storage
from spotpatch.testing import PostgresServer, ServerError, study_lock_free

pytestmark = pytest.mark.postgres


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[PostgresServer]:
    """A PostgreSQL server on 127.0.0.1 for this session, stopped at its end."""
    server = PostgresServer()
    try:
        server.start()
    except ServerError as e:
        server.stop()
        pytest.fail(str(e), pytrace=False)
    yield server
    server.stop()


@pytest.fixture
def postgres_url(postgres_server) -> str:
    """A new, empty database of the session's server, as a ``postgresql://`` storage URL."""
    return postgres_server.create_database(f"study_{secrets.token_hex(6)}")


def test_a_missing_driver_names_the_extra_that_installs_it(monkeypatch, capsys):
    # What a postgresql:// URL meets without psycopg: SQLAlchemy imports it and fails.
    monkeypatch.setitem(sys.modules, "psycopg", None)
    url = "postgresql://spotpatch:secret@127.0.0.1:9/spotpatch"
    assert main(["status", "--storage", url]) == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and "driver (psycopg) is not installed" in err
    assert 'pip install "spotpatch[postgres]"' in err


def test_a_lost_host_s_sessions_end_within_two_minutes(postgres_url):
    # The server's keepalives, set on every session a storage opens (else: the system's, two
    # hours); a host that vanished while holding the study's lock holds it no longer.
    import sqlalchemy

    from spotpatch.studies._storage import KEEPALIVES

    engine = open_storage(postgres_url).engine
    query = "SELECT name, setting FROM pg_settings WHERE name LIKE 'tcp_keepalives_%'"
    for _ in range(2):  # a new session too, not only the one the first check opened
        with engine.connect() as conn:
            settings = dict(conn.execute(sqlalchemy.text(query)).all())
        assert settings == {name: str(value) for name, value in KEEPALIVES.items()}
        engine.dispose()
    idle, interval, count = KEEPALIVES.values()
    assert idle + interval * count <= 120


TRIALS = 3


def _spec(bench_study, folder: Path, steps: int = 2) -> Path:
    """A bundled study at a tiny budget whose patch tensors go to one shared folder."""
    return bench_study(
        folder / "glyphs.toml",
        "glyphs",
        train={"steps": steps, "batch_size": 4},
        search={"presets": (), "warm_start": "none", "artifacts": folder / "shared-artifacts"},
    )


def _driver(spec: Path, url: str, host: Path) -> subprocess.Popen:
    """``spotpatch run`` in a process (and session) of its own, as on a host of its own: its
    own working folder and temporary folder (where a host's processes share a file lock)."""
    (host / "tmp").mkdir(parents=True, exist_ok=True)
    cmd = [sys.executable, "-m", "spotpatch", "run", str(spec), "--trials", str(TRIALS)]
    # One thread each: drivers sharing a small host's cores would otherwise thrash.
    env = {**os.environ, "TMPDIR": str(host / "tmp"), "OMP_NUM_THREADS": "1"}
    with open(host / "driver.log", "w") as log:
        return subprocess.Popen(
            [*cmd, "--storage", url],
            cwd=host,
            env=env,
            stdout=log,
            stderr=log,
            start_new_session=True,
        )


@contextlib.contextmanager
def _drivers(spec: Path, url: str, folder: Path, n: int = 2) -> Iterator[list]:
    """``n`` drivers of one study; those still running at the end are killed."""
    procs = [_driver(spec, url, folder / f"host{i}") for i in range(n)]
    try:
        yield procs
    finally:
        for p in procs:
            if p.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(p.pid, signal.SIGKILL)
                p.wait()


def _records(storage) -> list:
    storage = open_storage(storage) if isinstance(storage, str) else storage
    return trial_records(load_study("glyphs", storage))


def _pid(record) -> int | None:
    return (record.heartbeat or {}).get("pid")


def _configs(records) -> set[str]:
    return {json.dumps(r.sites, sort_keys=True) for r in records}


def _log(folder: Path) -> str:
    return "\n".join(p.read_text()[-1500:] for p in sorted(folder.glob("host*/driver.log")))


def _wait_until(storage, condition, procs, folder: Path, what: str) -> list:
    """The study's records once ``condition(records)`` holds (the drivers still running)."""
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline:
        records = _records(storage) if "glyphs" in spotpatch_study_names(storage) else []
        if condition(records):
            return records
        assert all(p.poll() is None for p in procs), (
            f"a driver ended before {what}: {_log(folder)}"
        )
        time.sleep(0.1)
    pytest.fail(f"no {what} within 180 s: {_log(folder)}", pytrace=False)


def _pause_one_in_trial(storage, procs, folder: Path) -> tuple:
    """Stop (SIGSTOP) the first driver seen training, in its trial: (that driver, the other)."""
    pids = {p.pid for p in procs}

    def training(records) -> set[int]:
        return {_pid(r) for r in records if r.state.name == "RUNNING"} & pids

    while True:
        records = _wait_until(storage, training, procs, folder, "running trial")
        paused = next(p for p in procs if p.pid in training(records))
        os.killpg(paused.pid, signal.SIGSTOP)
        # Still running once stopped: stopped in that trial (else it had just told it), and
        # past the study's lock, which it holds while it asks (the other would wait on it).
        if study_lock_free(storage, "glyphs") and any(
            r.state.name == "RUNNING" and _pid(r) == paused.pid for r in _records(storage)
        ):
            return paused, next(p for p in procs if p is not paused)
        os.killpg(paused.pid, signal.SIGCONT)


@pytest.fixture(scope="module")
def shared_study(postgres_server, bench_study, tmp_path_factory):
    """Two drivers that ran one study to its total together: (url, their pids)."""
    folder = tmp_path_factory.mktemp("shared")
    url = postgres_server.create_database("shared")
    storage = open_storage(url)
    spec = _spec(bench_study, folder)
    with _drivers(spec, url, folder) as procs:
        # The first to train pauses in its trial until the other has asked too: both then
        # train, whichever started faster, and the second asks while the first trains.
        first, second = _pause_one_in_trial(storage, procs, folder)
        try:
            _wait_until(
                storage,
                lambda rs: any(_pid(r) == second.pid for r in rs),
                [second],
                folder,
                "trial asked by the other driver",
            )
        finally:
            os.killpg(first.pid, signal.SIGCONT)
        codes = [p.wait(timeout=300) for p in procs]
    assert codes == [0, 0], _log(folder)
    return url, {p.pid for p in procs}


def test_two_drivers_share_one_study_to_its_total(shared_study):
    url, pids = shared_study
    records = _records(url)
    complete = [r for r in records if r.complete]
    assert len(complete) == TRIALS  # together, not each
    assert {_pid(r) for r in complete} == pids  # both drivers trained trials
    assert all(r.artifact_id for r in complete)
    # The second asked while the first trained: seeded alike, it would have proposed the same.
    assert len(_configs(complete)) == TRIALS


def test_a_killed_driver_s_trial_is_retried_and_nothing_is_lost(
    bench_study, postgres_url, tmp_path
):
    spec = _spec(bench_study, tmp_path)
    storage = open_storage(postgres_url)
    with _drivers(spec, postgres_url, tmp_path) as procs:
        # The first to train is paused in its trial until the other completes one, then killed.
        victim, survivor = _pause_one_in_trial(storage, procs, tmp_path)
        _wait_until(
            storage,
            lambda rs: any(r.complete and _pid(r) == survivor.pid for r in rs),
            [survivor],
            tmp_path,
            "trial completed by the other driver",
        )
        os.killpg(victim.pid, signal.SIGKILL)
        victim.wait()
        after_kill = _records(storage)
        before = {r.number: r.map for r in after_kill if r.complete}
        killed = {r.number for r in after_kill if _pid(r) == victim.pid and not r.complete}
        assert killed  # the trial it was training
        assert survivor.wait(timeout=300) == 0, _log(tmp_path)
    records = _records(postgres_url)
    complete = [r for r in records if r.complete]
    assert len(complete) == TRIALS
    assert {r.number: r.map for r in complete if r.number in before} == before  # none lost
    by_number = {r.number: r for r in records}
    for number in killed:
        assert by_number[number].state.name == "FAIL" and by_number[number].retried
        retries = [r for r in records if r.retry_of == number]
        # Trained by the survivor, or found trained already (then it holds that trial's result).
        assert len(retries) == 1
        assert retries[0].duplicate_of is not None or (
            retries[0].complete and _pid(retries[0]) == survivor.pid
        )
    assert len(_configs(complete)) == TRIALS  # no config trained twice


def test_status_dashboard_export_and_plan_read_the_shared_study(
    shared_study, tmp_path, monkeypatch, capsys
):
    url, _ = shared_study
    complete = {r.number: r for r in _records(url) if r.complete}
    monkeypatch.chdir(tmp_path)  # a third host: only the storage and the artifacts are shared
    assert main(["status", "--storage", url, "--json"]) == 0
    (status,) = json.loads(capsys.readouterr().out)
    assert status["name"] == "glyphs" and status["done"] == TRIALS and status["failed"] == 0
    assert main(["plan", "--budget", "100MB", "--storage", url, "--json"]) == 0
    plan = json.loads(capsys.readouterr().out)
    assert plan["choices"]["glyphs"]["trial"] in complete
    assert main(["dashboard", "--storage", url, "--out", "report.html"]) == 0
    assert "glyphs" in (tmp_path / "report.html").read_text()
    capsys.readouterr()
    # No full fine-tune ran here (no presets): no answer, so a rule picks the patch.
    argv = ["export", "glyphs", "--out", "patch", "--storage", url, "--json"]
    assert main(argv) == 2 and "full fine-tune" in capsys.readouterr().err
    assert main([*argv, "--select", "knee"]) == 0
    info = json.loads(capsys.readouterr().out)
    chosen = complete[info["study"]["trial"]]
    assert info["metrics"]["patch_bytes"] == chosen.patch_bytes
    assert (tmp_path / "patch" / "patch.safetensors").stat().st_size > chosen.patch_bytes
