"""Liveness of running trials: a heartbeat per process, and a lock per host.

Optuna's own heartbeat covers only RDB storages driven by ``optimize()``; ours works for every
storage and backend. Every process stamps the trials it runs (host, pid, time) every
``interval`` seconds; :mod:`spotpatch.search._recovery` reads the stamps. The host lock
serializes asking across the processes of one machine that share a study, so two local workers
never both decide that a study still needs a trial.
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
from collections.abc import Iterator
from pathlib import Path

from spotpatch.search._record import write_heartbeat

__all__ = ["Heartbeat", "host_lock", "process_alive", "this_process"]


def this_process() -> dict[str, object]:
    """The stamp of this process: host, pid and the time now."""
    return {"host": socket.gethostname(), "pid": os.getpid(), "time": time.time()}


def process_alive(pid: int) -> bool:
    """Whether a process of this host is still running."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


class Heartbeat:
    """A daemon thread that stamps the trials this process runs, every ``interval`` seconds.

    Example:
        >>> beat = Heartbeat(storage, interval=20.0)  # doctest: +SKIP
        >>> beat.add(trial_id)  # stamped now, then every 20 s until remove(trial_id)
    """

    def __init__(self, storage, interval: float):
        self.storage, self.interval = storage, interval
        self.trial_ids: set[int] = set()
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None

    def stamp(self, trial_id: int) -> None:
        with contextlib.suppress(Exception):  # a finished trial refuses the stamp: fine
            write_heartbeat(self.storage, trial_id, this_process())

    def add(self, trial_id: int) -> None:
        self.stamp(trial_id)
        with self._lock:
            self.trial_ids.add(trial_id)
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, daemon=True)
                self._thread.start()

    def remove(self, trial_id: int) -> None:
        with self._lock:
            self.trial_ids.discard(trial_id)

    def _run(self) -> None:
        while True:
            time.sleep(self.interval)
            with self._lock:
                ids = list(self.trial_ids)
            for trial_id in ids:
                self.stamp(trial_id)


def _lock_key(storage, study_name: str) -> str:
    url = getattr(storage, "url", None)
    if isinstance(url, str) and url.startswith("sqlite:///"):
        return f"{Path(url[len('sqlite:///') :]).resolve()}|{study_name}"
    if isinstance(url, str):
        return f"{url}|{study_name}"
    return f"{storage!r}|{study_name}"  # an in-memory storage: one process only


@contextlib.contextmanager
def host_lock(storage, study_name: str) -> Iterator[None]:
    """Hold a file lock shared by every process of this host that opens the same study."""
    digest = hashlib.sha256(_lock_key(storage, study_name).encode()).hexdigest()[:16]
    path = Path(tempfile.gettempdir()) / f"spotpatch-{digest}.lock"
    with open(path, "a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)
