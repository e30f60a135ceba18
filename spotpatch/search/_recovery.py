"""Recovering trials that a stopped worker left behind: failed, and their configs queued again.

A RUNNING trial is stale when the process that stamped it is gone (same host), or when its last
stamp (or its start, if it never got one) is older than ``stale_after`` seconds (another host).
Every storage and backend resumes this way, so a killed run, a Ctrl-C and a lost Ray worker all
end the same: the trial is FAIL with the reason, marked retried (it no longer counts toward the
study's total), and its config is queued again, after any configs queued before it (a
confirmation run is only failed: the confirmation asks for it again). Failing a trial and
queueing its config are two writes; a process stopped between them leaves a retried trial with
no retry, whose config the next process to ask queues.
"""

from __future__ import annotations

import logging
import os
import socket
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from spotpatch.search._heartbeat import process_alive
from spotpatch.search._record import TrialRecord, enqueue_attrs, mark_failed, mark_retried
from spotpatch.spaces import PatchConfig

__all__ = [
    "MAX_ATTEMPTS",
    "attempts",
    "beat_is_stale",
    "fail_confirmation",
    "give_up",
    "is_stale",
    "retry_trial",
    "recover_stale",
    "unqueued_retries",
]

log = logging.getLogger("spotpatch")
#: Seconds an unstamped RUNNING trial is given. A trial is asked and stamped under the study's
#: lock, which whoever looks for stale trials holds: one with no stamp lost its process between
#: the two. The grace covers hosts that share a storage but not its lock (SQLite over a network).
_UNSTAMPED_GRACE = 5.0
_STOPPED = "not finished: its worker stopped"
#: Runs of one config in a row that failed (raised, or their worker died): the last is failed
#: for good and counts (a config that fails every time would otherwise be retried forever).
MAX_ATTEMPTS = 3


def attempts(records: Sequence[TrialRecord], number: int) -> int:
    """How many runs in a row of trial ``number``'s config it ends: 1, plus one per retry
    before it (a retry of a retry...)."""
    by_number = {r.number: r for r in records}
    runs = 1
    while (number := by_number[number].retry_of) is not None and number in by_number:
        runs += 1
    return runs


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
        # Stamped as soon as it is asked, under the study's lock (:data:`_UNSTAMPED_GRACE`).
        started = record.started.timestamp() if record.started else now
        return now - started > min(stale_after, _UNSTAMPED_GRACE)
    return beat_is_stale(record.heartbeat, stale_after, now=now)


def give_up(study, storage, number: int, why: str, runs: int) -> bool:
    """Fail trial ``number``, the ``runs`` th failed run of its config in a row, for good: its
    config is not queued again and it counts toward the study's total. Returns False when
    another process finished or failed it first."""
    text = f"{why}; {runs} runs of this config in a row failed: not retried"
    return _fail(study, storage, number, lambda trial_id: mark_failed(storage, trial_id, text))


def fail_confirmation(study, storage, number: int, why: str) -> bool:
    """Fail confirmation run ``number`` with ``why``; nothing is queued: the confirmation asks
    for the run again while it needs it (up to its attempts). False when another process
    finished or failed it first."""
    return _fail(study, storage, number, lambda trial_id: mark_failed(storage, trial_id, why))


def retry_trial(
    study,
    storage,
    number: int,
    params: Mapping[str, Any],
    why: str,
    *,
    config: PatchConfig | None = None,
) -> bool:
    """Fail trial ``number`` with ``why`` and queue its config again (``config``: the one it
    trained, when its params are only the nearest gates).

    Returns False (and queues nothing) when another process finished or failed it first. Call
    it under the study's lock: a process stopped between the two steps leaves the config to
    :func:`recover_stale`.
    """
    if not _fail(study, storage, number, lambda trial_id: mark_retried(storage, trial_id, why)):
        return False
    _queue_retry(study, storage, number, params, config)
    return True


def _fail(study, storage, number: int, mark: Callable[[int], None]) -> bool:
    """``mark`` trial ``number`` (by its storage id), then tell it FAIL; False when another
    process finished or failed it first."""
    import optuna

    trial_id = _trial_id(study, storage, number)
    try:
        mark(trial_id)
        study.tell(number, state=optuna.trial.TrialState.FAIL)
    except (optuna.exceptions.UpdateFinishedTrialError, ValueError, RuntimeError):
        return False
    return True


def _queue_retry(
    study, storage, number: int, params: Mapping[str, Any], config: PatchConfig | None
) -> None:
    attrs = enqueue_attrs("retry", retry_of=number, config=config)
    study.enqueue_trial(_planned_params(study, storage, number, params), user_attrs=attrs)


def _planned_params(study, storage, number: int, params: Mapping[str, Any]) -> dict[str, Any]:
    """The params trial ``number`` was to run: those it was queued with (a retry's, a preset's),
    with ``params`` (what it suggested) over them. A trial stopped while it suggested stored
    only some of its queued params; its retry must still run the whole config."""
    queued = storage.get_trial(_trial_id(study, storage, number)).system_attrs
    return {**(queued.get("fixed_params") or {}), **params}


def _trial_id(study, storage, number: int) -> int:
    """The storage's id of trial ``number`` of ``study``."""
    return storage.get_trial_id_from_study_id_trial_number(
        storage.get_study_id_from_name(study.study_name), number
    )


def unqueued_retries(records: Sequence[TrialRecord]) -> list[TrialRecord]:
    """Trials failed for a retry that was never queued: the process that retried them stopped
    between the two steps. Read under the study's lock, which every retry holds, these are
    orphans, not retries under way."""
    import optuna

    queued = {r.retry_of for r in records if r.retry_of is not None}
    return [
        r
        for r in records
        if r.state == optuna.trial.TrialState.FAIL and r.retried and r.number not in queued
    ]


def recover_stale(study, storage, records: Sequence[TrialRecord], stale_after: float) -> list[int]:
    """Retry every stale trial among ``records``, and queue the config of every failed trial
    whose retry was never queued; returns their numbers. Call it under the study's lock."""
    now = time.time()
    recovered = []
    for r in records:
        if not is_stale(r, stale_after, now=now):
            continue
        if r.confirm_stage is not None:
            if fail_confirmation(study, storage, r.number, _STOPPED):
                recovered.append(r.number)
            continue
        runs = attempts(records, r.number)
        if runs >= MAX_ATTEMPTS:
            if give_up(study, storage, r.number, _STOPPED, runs):
                log.warning("trial %d: its worker stopped, %d runs of its config in a row "
                            "failed: not retried", r.number, runs)  # fmt: skip
        elif retry_trial(study, storage, r.number, r.params, _STOPPED, config=r.config):
            recovered.append(r.number)
    for r in unqueued_retries(records):
        _queue_retry(study, storage, r.number, r.params, r.config)
        recovered.append(r.number)
    if recovered:
        log.warning("retrying trials left running by a stopped worker: %s", recovered)
    return recovered
