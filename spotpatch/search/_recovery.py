"""Recovering trials that a stopped worker left behind: failed, and their configs queued again.

A RUNNING trial is stale when the process that stamped it is gone (same host), or when its last
stamp (or its start, if it never got one) is older than ``stale_after`` seconds (another host).
Every storage and backend resumes this way, so a killed run, a Ctrl-C and a lost Ray worker all
end the same: the trial is FAIL with the reason, marked retried (it no longer counts toward the
study's total), and its config is the next trial.
"""

from __future__ import annotations

import logging
import os
import socket
import time
from collections.abc import Mapping, Sequence
from typing import Any

from spotpatch.search._heartbeat import process_alive
from spotpatch.search._record import TrialRecord, enqueue_attrs, mark_retried
from spotpatch.spaces import PatchConfig

__all__ = ["beat_is_stale", "is_stale", "retry_trial", "recover_stale"]

log = logging.getLogger("spotpatch")
_UNSTAMPED_GRACE = 30.0  # seconds


def beat_is_stale(
    beat: Mapping[str, Any], stale_after: float, *, now: float | None = None
) -> bool:
    """Whether the process that stamped ``beat`` is gone: not running (same host), or silent
    for ``stale_after`` seconds (another host)."""
    now = time.time() if now is None else now
    if beat.get("host") == socket.gethostname() and beat.get("pid") != os.getpid():
        return not process_alive(int(beat["pid"]))
    return now - float(beat.get("time", 0)) > stale_after


def is_stale(record: TrialRecord, stale_after: float, *, now: float | None = None) -> bool:
    """Whether a RUNNING trial's worker is gone."""
    import optuna

    if record.state != optuna.trial.TrialState.RUNNING:
        return False
    now = time.time() if now is None else now
    if record.heartbeat is None:
        # A trial is stamped as soon as it is asked (under the host lock): one with no stamp
        # after a short grace lost its process between the two.
        started = record.started.timestamp() if record.started else now
        return now - started > min(stale_after, _UNSTAMPED_GRACE)
    return beat_is_stale(record.heartbeat, stale_after, now=now)


def retry_trial(
    study,
    storage,
    number: int,
    params: Mapping[str, Any],
    why: str,
    *,
    config: PatchConfig | None = None,
) -> bool:
    """Fail trial ``number`` as not finished and queue its config again (``config``: the one
    it trained, when its params are only the nearest gates).

    Returns False (and queues nothing) when another process finished or failed it first.
    """
    import optuna

    trial_id = storage.get_trial_id_from_study_id_trial_number(
        storage.get_study_id_from_name(study.study_name), number
    )
    try:
        mark_retried(storage, trial_id, why)
        study.tell(number, state=optuna.trial.TrialState.FAIL)
    except (optuna.exceptions.UpdateFinishedTrialError, ValueError, RuntimeError):
        return False
    attrs = enqueue_attrs("retry", retry_of=number, config=config)
    study.enqueue_trial(dict(params), user_attrs=attrs)
    return True


def recover_stale(study, storage, records: Sequence[TrialRecord], stale_after: float) -> list[int]:
    """Retry every stale trial among ``records``; returns their numbers."""
    now = time.time()
    recovered = [
        r.number
        for r in records
        if is_stale(r, stale_after, now=now)
        and retry_trial(study, storage, r.number, r.params, "its worker stopped", config=r.config)
    ]
    if recovered:
        log.warning("retrying trials left running by a stopped worker: %s", recovered)
    return recovered
