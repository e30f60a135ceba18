"""Studies shared by two hosts: network namespaces joined by a veth pair (spotpatch.testing's
``TestHosts``), each with its own address and host name, on one shared file system.

Host a runs PostgreSQL (and, for the Ray test, the Ray head); host b runs a driver (or a Ray
node). Faults, both in one run of the two drivers: the network between the hosts cut for longer
than a heartbeat's stale time, then restored, and every process of host b killed at once in the
middle of a trial (the host is lost). Afterwards the study has exactly its total, every
interrupted trial's config ran again, no completed trial was lost or trained twice, and
``status``, ``export`` and ``dashboard`` work from host b, over the network. The tests need
root (``ip netns``); elsewhere they skip and say why.
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import signal
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from spotpatch.search import spotpatch_study_names, trial_records
from spotpatch.studies import load_study, open_storage
from spotpatch.testing import (
    PostgresServer,
    RayNode,
    ServerError,
    TestHosts,
    namespaces_problem,
    study_lock_free,
)

_PROBLEM = namespaces_problem()
pytestmark = [
    pytest.mark.hosts,
    pytest.mark.skipif(_PROBLEM is not None, reason=f"no test hosts: {_PROBLEM}"),
]

TRIALS = 4  # a study's total
FAULTS_TRIALS = 14  # the study that meets both faults: trials left for b after the cut
STALE_AFTER = 6.0  # seconds without a heartbeat before another host retries a trial
PORT = 5432  # the namespaces are the tests' own: fixed ports collide with nothing
#: What every Ray process of the hosts shares: token authentication and the cluster's token.
RAY_AUTH = {"RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN": secrets.token_hex(32)}


@pytest.fixture(scope="module")
def hosts() -> Iterator[TestHosts]:
    with TestHosts(["a", "b"]) as made:
        yield made


@pytest.fixture(scope="module")
def server(hosts) -> Iterator[PostgresServer]:
    """PostgreSQL on host a, at a's address, open to the hosts' network."""
    a = hosts["a"]
    pg = PostgresServer(a.address, prefix=a.prefix, clients=hosts.network, port=PORT)
    try:
        pg.start()
    except ServerError as e:
        pg.stop()
        pytest.fail(str(e), pytrace=False)
    yield pg
    pg.stop()


@pytest.fixture
def database(server, request) -> tuple[str, str]:
    """A new database: (its URL as the hosts reach it, its URL through the Unix socket for
    this test's own reads)."""
    name = request.node.name.removeprefix("test_")[:40]
    url = server.create_database(name)
    return url, server.socket_url(name)


def _spec(bench_study, folder: Path, **search) -> Path:
    """A bundled study at a tiny budget; its patch tensors go to one folder both hosts see."""
    return bench_study(
        folder / "glyphs.toml",
        "glyphs",
        train={"steps": 3, "batch_size": 4},
        search={
            "presets": (),
            "warm_start": "none",
            "artifacts": folder / "shared-artifacts",
            "stale_after": STALE_AFTER,
            **search,
        },
    )


def _spotpatch(*args: str) -> list[str]:
    return [sys.executable, "-m", "spotpatch", *args]


def _records(url: str) -> list:
    storage = open_storage(url)
    if "glyphs" not in spotpatch_study_names(storage):
        return []
    return trial_records(load_study("glyphs", storage))


def _logs(hosts: TestHosts) -> str:
    logs = sorted(hosts.folder.glob("*/*.log"))
    return "\n".join(f"--- {p}\n{p.read_text(errors='replace')[-1500:]}" for p in logs)


def _wait(what: str, check: Callable[[], object], hosts: TestHosts, timeout: float = 180):
    """``check()``'s first true value, polled every 0.2 s for at most ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if found := check():
            return found
        time.sleep(0.2)
    pytest.fail(f"no {what} within {timeout:.0f} s:\n{_logs(hosts)}", pytrace=False)


def _host_of(record) -> str | None:
    return (record.heartbeat or {}).get("host")


def _running_on(url: str, host: str) -> set[int]:
    return {r.number for r in _records(url) if r.state.name == "RUNNING" and _host_of(r) == host}


@contextlib.contextmanager
def _frozen(host) -> Iterator[None]:
    """Every process of ``host`` stopped (SIGSTOP) meanwhile, so that what it runs stays as it
    is while the test looks."""
    pids = host.pids()
    for pid in pids:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGSTOP)
    try:
        yield
    finally:
        for pid in pids:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGCONT)


@contextlib.contextmanager
def _frozen_in_trial(url: str, host, hosts: TestHosts) -> Iterator[set[int]]:
    """Wait until ``host`` runs a trial, then keep ``host`` frozen in it; yields the numbers of
    the trials it runs."""
    while True:
        _wait(f"trial running on host {host.name}", lambda: _running_on(url, host.name), hosts)
        with _frozen(host):
            # It may have finished before it froze, or be asking for its next trial, holding
            # the study's lock (every other host would wait on it).
            numbers = _running_on(url, host.name)
            if numbers and study_lock_free(open_storage(url), "glyphs"):
                yield numbers
                return


def _configs(records) -> list[str]:
    return [json.dumps(r.sites, sort_keys=True) for r in records if r.complete]


def _check_the_study(
    url: str, interrupted: set[int], completed_before: dict[int, float], total: int = TRIALS
):
    """Exactly the total; every interrupted trial failed and its config ran again once; no
    completed trial lost; no config trained twice."""
    records = _records(url)
    by_number = {r.number: r for r in records}
    complete = [r for r in records if r.complete]
    assert len(complete) == total
    assert {n: by_number[n].map for n in completed_before} == completed_before
    for number in interrupted:
        assert by_number[number].state.name == "FAIL" and by_number[number].retried
        (retry,) = [r for r in records if r.retry_of == number]
        assert retry.complete or retry.duplicate_of is not None
        # Its gates (a trial lost as it started may have no other attribute written yet).
        assert retry.params == by_number[number].params
    configs = _configs(records)
    assert len(set(configs)) == len(configs)
    assert not [r for r in records if r.state.name in ("RUNNING", "WAITING")]
    return complete


_READERS = """
import contextlib, sys
from spotpatch.cli import main
url = sys.argv[1]
commands = {
    "status.json": ["status", "--storage", url, "--json"],
    "export.json": ["export", "glyphs", "--out", "patch", "--storage", url, "--select", "knee",
                    "--json"],
    "dashboard.txt": ["dashboard", "--storage", url, "--out", "d.html"],
}
code = 0
for out, argv in commands.items():
    with open(out, "w") as f, contextlib.redirect_stdout(f):
        code = max(code, main(argv))
sys.exit(code)
"""


def _readers_work_from(from_hosts: list, url: str, complete: list, total: int) -> None:
    """``status``, ``export`` and ``dashboard`` from each host at once, reading the study over
    the network (the three commands in one process per host: one start instead of three)."""
    readers = {host.name: host.popen([sys.executable, "-c", _READERS, url], log="read.log")
               for host in from_hosts}  # fmt: skip
    for host in from_hosts:
        code = readers[host.name].wait(timeout=120)
        assert code == 0, (host.folder / "read.log").read_text()[-2000:]
        _check_readers(host.folder, complete, total)


def _check_readers(folder: Path, complete: list, total: int) -> None:
    (status,) = json.loads((folder / "status.json").read_text())
    assert status["done"] == total
    exported = json.loads((folder / "export.json").read_text())
    assert exported["study"]["trial"] in {r.number for r in complete}
    assert (folder / "patch" / "patch.safetensors").is_file()
    assert "glyphs" in (folder / "d.html").read_text()


def _drivers(hosts: TestHosts, spec: Path, url: str, total: int) -> dict[str, object]:
    """``spotpatch run`` of the same study on each host, one trial at a time each."""
    argv = _spotpatch("run", str(spec), "--trials", str(total), "--storage", url)
    env = {"OMP_NUM_THREADS": "1"}  # two drivers on a small machine's cores
    return {name: h.popen(argv, log="driver.log", env=env) for name, h in hosts.hosts.items()}


def _stop(procs) -> None:
    for p in procs:
        if p.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(p.pid, signal.SIGKILL)
            p.wait()


def test_a_cut_network_then_a_lost_host_and_the_study_ends_at_its_total(
    hosts, database, bench_study, tmp_path
):
    """One run of both drivers meets both faults: the network cut while host b trains (host a
    fails b's trial once it is stale, b drops its outcome once the network is back), then
    host b lost in another trial."""
    url, local = database
    spec = _spec(bench_study, tmp_path)
    procs = _drivers(hosts, spec, url, FAULTS_TRIALS)
    b = hosts["b"]
    try:
        with _frozen_in_trial(local, b, hosts) as cut_off:
            hosts.cut()
        try:
            # Host a stops hearing from b's trial and fails it, queueing its config again.
            _wait(
                "trial of host b failed by host a",
                lambda: all(
                    r.state.name == "FAIL" for r in _records(local) if r.number in cut_off
                ),
                hosts,
                timeout=STALE_AFTER * 10,
            )
        finally:
            hosts.restore()
        log = b.folder / "driver.log"
        _wait("host b dropping its failed trial", lambda: "dropped" in log.read_text(), hosts)
        with _frozen_in_trial(local, b, hosts) as lost_in:
            completed = {r.number: r.map for r in _records(local) if r.complete}
            lost = b.kill_all()
        assert lost >= 1 and not b.pids() and not lost_in & cut_off
        assert procs["a"].wait(timeout=240) == 0, _logs(hosts)
    finally:
        _stop(procs.values())
    complete = _check_the_study(local, cut_off | lost_in, completed, FAULTS_TRIALS)
    assert "a" in {_host_of(r) for r in complete}
    # b is back: a new machine on the same address, reading the study over the network.
    _readers_work_from([b], url, complete, FAULTS_TRIALS)


@pytest.fixture
def ray_cluster(hosts) -> Iterator[str]:
    """A Ray head on host a and a node of host b that joins it, a CPU each, started as
    docs/scaling.md says, with token authentication; yields the head's ``HOST:PORT``. The head
    declares a node dead after 3 missed health checks a second apart (Ray's default: 5, 3 s
    apart)."""
    a, b = hosts["a"], hosts["b"]
    env = {"OMP_NUM_THREADS": "1", "TMPDIR": str(a.folder / "tmp"), **RAY_AUTH}
    checks = {"RAY_health_check_period_ms": "1000", "RAY_health_check_failure_threshold": "3"}
    head = RayNode(a.address, cpus=1, port=6379, prefix=a.prefix, env={**env, **checks})
    node = RayNode(
        b.address,
        cpus=1,
        head_address=f"{a.address}:6379",
        prefix=b.prefix,
        env={**env, "TMPDIR": str(b.folder / "tmp")},
    )
    try:
        head.start()
        node.start()
        yield f"{a.address}:6379"
    except ServerError as e:
        pytest.fail(str(e), pytrace=False)
    finally:
        node.stop()
        head.stop()


def _trial_processes(host) -> list[int]:
    """Ray's processes of ``host`` that run a trial (Ray Tune's trainable)."""
    found = []
    for pid in host.pids():
        with contextlib.suppress(OSError):
            if b"ImplicitFunc" in Path(f"/proc/{pid}/cmdline").read_bytes():
                found.append(pid)
    return found


def test_a_ray_run_uses_the_other_host_s_node_and_survives_its_loss(
    hosts, ray_cluster, database, bench_study, tmp_path
):
    url, local = database
    spec = _spec(bench_study, tmp_path)
    a, b = hosts["a"], hosts["b"]
    argv = _spotpatch("run", str(spec), "--trials", str(TRIALS), "--storage", url)
    argv += ["--backend", "ray", "--ray-address", ray_cluster, "--workers", "2"]
    driver = a.popen(argv, log="driver.log", env={"OMP_NUM_THREADS": "1", **RAY_AUTH})
    try:
        _wait("trial running on host b's Ray node", lambda: _trial_processes(b), hosts)
        with _frozen(b):
            completed = {r.number: r.map for r in _records(local) if r.complete}
            b.kill_all()
        assert driver.wait(timeout=240) == 0, _logs(hosts)
    finally:
        _stop([driver])
    records = _records(local)
    interrupted = {r.number for r in records if r.state.name == "FAIL"}
    assert interrupted  # the trial host b ran
    failed = [r for r in records if r.number in interrupted]
    assert all("Ray worker died" in r.error for r in failed), [r.error for r in failed]
    _check_the_study(local, interrupted, completed)
