"""Liveness of running work: a heartbeat per process, and a lock per host.

Optuna's own heartbeat covers only RDB storages driven by ``optimize()``; ours works for every
storage and backend. Every process stamps what it runs (a trial, a study's warm start) with
(host, pid, time) every ``interval`` seconds; :mod:`spotpatch.search._recovery` reads the stamps.
The study lock serializes asking across the processes that share a study, so two of them never
both decide that it still needs a trial: a file lock for the processes of one machine, and on
PostgreSQL also the database's advisory lock, for drivers on several machines.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import os
import socket
import tempfile
import threading
import time
from collections.abc import Callable, Hashable, Iterator, Mapping
from pathlib import Path
from typing import Any

__all__ = ["Heartbeat", "advisory_lock", "host_lock", "process_alive", "this_process"]

Stamp = Callable[[Mapping[str, Any]], None]


def this_process() -> dict[str, Any]:
    """The stamp of this process: host, pid and the time now."""
    return {"host": socket.gethostname(), "pid": os.getpid(), "time": time.time()}


def process_alive(pid: int) -> bool:
    """Whether a process of this host is still running (a zombie, killed but not yet reaped by
    its parent, is not)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii", errors="replace") as f:
            return f.read().rpartition(")")[2].split()[0] != "Z"
    except (OSError, IndexError):
        return True  # no /proc (not Linux): the signal's answer stands


class Heartbeat:
    """A daemon thread that stamps what this process runs, every ``interval`` seconds.

    Example:
        >>> beat, stamps = Heartbeat(interval=20.0), []
        >>> beat.add(7, lambda stamp: stamps.append(stamp))  # stamped now, then every 20 s
        >>> beat.remove(7)
        >>> stamps[0]["pid"] == os.getpid()
        True
    """

    def __init__(self, interval: float):
        self.interval = interval
        self._stamps: dict[Hashable, Stamp] = {}
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None

    @staticmethod
    def _stamp(stamp: Stamp) -> None:
        with contextlib.suppress(Exception):  # a finished trial refuses the stamp: fine
            stamp(this_process())

    def add(self, key: Hashable, stamp: Stamp) -> None:
        self._stamp(stamp)
        with self._lock:
            self._stamps[key] = stamp
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, daemon=True)
                self._thread.start()

    def remove(self, key: Hashable) -> None:
        with self._lock:
            self._stamps.pop(key, None)

    def _run(self) -> None:
        while True:
            time.sleep(self.interval)
            with self._lock:
                stamps = list(self._stamps.values())
            for stamp in stamps:
                self._stamp(stamp)


def _lock_key(storage, study_name: str) -> str:
    url = getattr(storage, "url", None)
    if isinstance(url, str) and url.startswith("sqlite:///"):
        return f"{Path(url[len('sqlite:///') :]).resolve()}|{study_name}"
    if isinstance(url, str):
        return f"{url}|{study_name}"
    return f"{storage!r}|{study_name}"  # an in-memory storage: one process only


@contextlib.contextmanager
def host_lock(storage, study_name: str) -> Iterator[None]:
    """Hold the study's lock: a file lock shared by every process of this host that opens the
    same study, then (PostgreSQL) the database's lock shared by every host."""
    digest = hashlib.sha256(_lock_key(storage, study_name).encode()).hexdigest()[:16]
    path = Path(tempfile.gettempdir()) / f"spotpatch-{digest}.lock"
    with open(path, "a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            with _database_lock(storage, study_name):
                yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


@contextlib.contextmanager
def _database_lock(storage, study_name: str) -> Iterator[None]:
    """PostgreSQL's lock on the study's name (the database is the scope, so hosts that name the
    server differently still share it)."""
    engine = getattr(storage, "engine", None)
    if engine is None or engine.dialect.name != "postgresql":
        yield
        return
    with advisory_lock(engine, database_lock_key(study_name)):
        yield


def database_lock_key(study_name: str) -> int:
    """The key of PostgreSQL's advisory lock on a study (a signed 64-bit integer)."""
    digest = hashlib.sha256(f"spotpatch|{study_name}".encode()).digest()
    return int.from_bytes(digest[:8], "big", signed=True)


@contextlib.contextmanager
def advisory_lock(engine, key: int) -> Iterator[None]:
    """Hold PostgreSQL's session advisory lock ``key`` (a signed 64-bit integer) on one of the
    engine's connections; the server releases it when that connection closes, also when the
    process dies."""
    import sqlalchemy

    with engine.connect() as conn:
        conn.execute(sqlalchemy.text("SELECT pg_advisory_lock(:key)"), {"key": key})
        try:
            yield
        finally:
            conn.execute(sqlalchemy.text("SELECT pg_advisory_unlock(:key)"), {"key": key})
