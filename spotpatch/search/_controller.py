"""The study controller: one Optuna study per task, its trials asked and told here.

Search sees configs and finished results, never torch modules. The call sequence per trial is
``ask`` (a config, or None when the study has its trials) -> score it (in this process, another
one, or on a Ray worker) -> ``tell_result`` / ``tell_failure`` / ``tell_pruned``.

Trials a dead worker left RUNNING are found by a heartbeat of our own (Optuna's covers only RDB
storages driven by ``optimize()``): every process beats for the trials it runs; a trial whose
process is gone (same host) or whose beat is older than ``stale_after`` is failed and its config
enqueued again, so every storage and backend resumes the same way.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import logging
import os
import socket
import tempfile
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from spotpatch.search._pareto import FrontPoint, hypervolume, pareto_front
from spotpatch.spaces import PRESETS, PatchConfig, PatchSpace

__all__ = [
    "StudyController",
    "StudyProgress",
    "EarlyStopping",
    "front_points",
    "summarize",
    "counts_toward_total",
    "early_stop_callback",
]

log = logging.getLogger("spotpatch")
ATTR_PREFIX = "spotpatch:"
_BEAT = ATTR_PREFIX + "heartbeat"
_RETRIED = ATTR_PREFIX + "retried"


@dataclass(frozen=True)
class EarlyStopping:
    """Multi-objective early stopping (Optuna's pruners handle one objective only).

    At each checkpoint (a fraction of the step budget) a trial's val mAP is compared with that
    of every finished trial, at the same step, whose patch is no larger: if it is below by more
    than ``margin`` (mAP in [0, 1]), the trial is dominated there and stops.
    """

    checkpoints: tuple[float, ...] = (0.33, 0.67)
    margin: float = 0.02


@dataclass(frozen=True)
class StudyProgress:
    """Where a study stands, for progress lines and ``status``."""

    done: int
    total: int
    failed: int
    pruned: int
    running: int
    front_size: int
    best_map: float | None
    smallest_front_bytes: int | None
    hypervolume: float | None


def front_points(trials) -> list[FrontPoint]:
    """Completed trials as (number, mAP, bytes) points."""
    import optuna

    return [
        FrontPoint(t.number, float(t.values[0]), int(t.values[1]))
        for t in trials
        if t.state == optuna.trial.TrialState.COMPLETE and t.values is not None
    ]


def counts_toward_total(trial) -> bool:
    """Finished trials and running ones count; queued ones and retried failures do not."""
    import optuna

    if trial.state == optuna.trial.TrialState.WAITING:
        return False
    if trial.state == optuna.trial.TrialState.FAIL:
        return not trial.system_attrs.get(_RETRIED, False)
    return True


def summarize(trials, total: int, full_bytes: int) -> StudyProgress:
    """Where a study stands, from its trials."""
    import optuna

    S = optuna.trial.TrialState
    counted = [t for t in trials if counts_toward_total(t)]
    points = front_points(trials)
    front = pareto_front(points)
    return StudyProgress(
        done=sum(t.state != S.RUNNING for t in counted),
        total=total,
        failed=sum(t.state == S.FAIL for t in counted),
        pruned=sum(t.state == S.PRUNED for t in counted),
        running=sum(t.state == S.RUNNING for t in counted),
        front_size=len(front),
        best_map=max((p.map for p in points), default=None),
        smallest_front_bytes=front[0].bytes if front else None,
        hypervolume=hypervolume(points, full_bytes) if points else None,
    )


class _Heartbeat:
    """A daemon thread that stamps the trials this process runs, every ``interval`` seconds."""

    def __init__(self, storage, interval: float):
        self.storage, self.interval = storage, interval
        self.trial_ids: set[int] = set()
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None

    def stamp(self, trial_id: int) -> None:
        beat = {"host": socket.gethostname(), "pid": os.getpid(), "time": time.time()}
        with contextlib.suppress(Exception):  # a finished trial refuses the stamp: fine
            self.storage.set_trial_system_attr(trial_id, _BEAT, beat)

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


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


class StudyController:
    """Asks and tells the trials of one task's study.

    Args:
        study: the Optuna study (directions: maximize mAP, minimize patch bytes).
        space: the task's patch space; its gates are the study's parameters.
        artifact_store: where patch tensors go (an Optuna artifact store).
        early_stopping: on when given.
        heartbeat: seconds between heartbeats of running trials.
        stale_after: a running trial with no heartbeat for this long is failed and retried.

    Example:
        >>> controller = StudyController(study, space, artifact_store=store)  # doctest: +SKIP
        >>> while (trial := controller.ask(total=24)) is not None:  # doctest: +SKIP
        ...     result = evaluator.evaluate(controller.config_of(trial))
        ...     controller.tell_result(trial, result)
    """

    def __init__(
        self,
        study,
        space: PatchSpace,
        *,
        artifact_store=None,
        early_stopping: EarlyStopping | None = None,
        heartbeat: float = 20.0,
        stale_after: float = 120.0,
    ):
        from optuna.distributions import CategoricalDistribution

        self.study = study
        self.space = space
        self.artifact_store = artifact_store
        self.early_stopping = early_stopping
        self.stale_after = stale_after
        self.distributions = {
            label: CategoricalDistribution(space.choices(label)) for label in space.groups()
        }
        self._heartbeat = _Heartbeat(study._storage, heartbeat)
        self._presets: dict[str, dict[str, str]] | None = None

    # -- counting -----------------------------------------------------------------------------
    def trials(self):
        return self.study.get_trials(deepcopy=False)

    def counted(self) -> int:
        """Trials toward the total: finished ones (retried failures aside) and running ones."""
        return sum(counts_toward_total(t) for t in self.trials())

    def progress(self, total: int) -> StudyProgress:
        return summarize(self.trials(), total, self.space.full_bytes())

    # -- asking -------------------------------------------------------------------------------
    @contextlib.contextmanager
    def _lock(self) -> Iterator[None]:
        """Serialize ask across the processes of this host that share the study."""
        key = f"{self.study._storage!r}|{self.study.study_name}"
        url = getattr(self.study._storage, "url", None)
        if isinstance(url, str) and url.startswith("sqlite:///"):
            key = f"{Path(url[len('sqlite:///') :]).resolve()}|{self.study.study_name}"
        digest = hashlib.sha256(key.encode()).hexdigest()[:16]
        path = Path(tempfile.gettempdir()) / f"spotpatch-{digest}.lock"
        with open(path, "a") as handle:
            fcntl.flock(handle, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(handle, fcntl.LOCK_UN)

    def enqueue(self, configs: list[PatchConfig], *, source: str) -> int:
        """Enqueue configs as the next trials (those already tried or queued are skipped)."""
        known = {tuple(sorted(t.params.items())) for t in self.trials()}
        added = 0
        for config in configs:
            params = self.space.gates_of(config)
            if tuple(sorted(params.items())) in known:
                continue
            self.study.enqueue_trial(params, user_attrs={"source": source})
            known.add(tuple(sorted(params.items())))
            added += 1
        return added

    def recover_stale(self) -> list[int]:
        """Fail RUNNING trials whose worker is gone and enqueue their configs again."""
        import optuna

        host = socket.gethostname()
        now = time.time()
        recovered = []
        for t in self.trials():
            if t.state != optuna.trial.TrialState.RUNNING:
                continue
            beat = t.system_attrs.get(_BEAT)
            if beat is None:
                started = t.datetime_start.timestamp() if t.datetime_start else now
                stale = now - started > self.stale_after
            elif beat.get("host") == host and beat.get("pid") != os.getpid():
                stale = not _alive(int(beat["pid"]))
            else:
                stale = now - float(beat.get("time", 0)) > self.stale_after
            if stale:
                self._retry(t._trial_id, t.number, t.params, "its worker stopped")
                recovered.append(t.number)
        if recovered:
            log.warning("retrying trials left running by a stopped worker: %s", recovered)
        return recovered

    def _retry(self, trial_id: int, number: int, params: Mapping[str, Any], why: str) -> None:
        import optuna

        storage = self.study._storage
        try:
            storage.set_trial_user_attr(trial_id, "error", f"not finished: {why}")
            storage.set_trial_system_attr(trial_id, _RETRIED, True)
            self.study.tell(number, state=optuna.trial.TrialState.FAIL)
        except (optuna.exceptions.UpdateFinishedTrialError, ValueError, RuntimeError):
            return  # another process finished or failed it first
        self.study.enqueue_trial(dict(params), user_attrs={"source": "retry", "retry_of": number})

    def ask(self, total: int):
        """The next trial, or None when ``total`` trials are done or running."""
        with self._lock():
            self.recover_stale()
            if self.counted() >= total:
                return None
            trial = self.study.ask(self.distributions)
        self._heartbeat.add(trial._trial_id)
        config = self.config_of(trial)
        trial.set_user_attr("config", config.to_dict())
        trial.set_user_attr("patch_bytes", self.space.patch_bytes(config))
        preset = self.preset_of(config)
        if preset is not None:
            trial.set_user_attr("preset", preset)
        return trial

    def preset_of(self, config: PatchConfig) -> str | None:
        """The fixed recipe (``head``, ``bn``, ...) a config equals, if any."""
        if self._presets is None:
            self._presets = {name: self.space.preset(name).to_dict() for name in PRESETS}
        wanted = config.to_dict()
        return next((name for name, c in self._presets.items() if c == wanted), None)

    def config_of(self, trial) -> PatchConfig:
        return self.space.config_from_gates(trial.params)

    # -- telling ------------------------------------------------------------------------------
    def _finish(self, trial, **tell) -> None:
        try:
            self.study.tell(trial, **tell)
        finally:
            self._heartbeat.remove(trial._trial_id)

    def tell_result(self, trial, result, *, patch_file: str | Path | None = None) -> None:
        """Record a scored trial: its metrics and config as attributes, its patch tensors as an
        artifact (``patch_file``, a safetensors file; written from ``result.tensors`` when not
        given), then the objectives."""
        import optuna

        attrs = {
            "map": result.map,
            "map50": result.map50,
            "patch_bytes": result.patch_bytes,
            "train_seconds": round(result.train_seconds, 3),
            "eval_seconds": round(result.eval_seconds, 3),
            "config": result.config.to_dict(),
            "summary": result.config.summary(),
            "intermediate": {str(s): v for s, v in result.intermediate},
        }
        for key, value in attrs.items():
            trial.set_user_attr(key, value)
        if self.artifact_store is not None:
            with tempfile.TemporaryDirectory() as tmp:
                path = patch_file or _write_tensors(
                    result.tensors, Path(tmp) / "patch.safetensors"
                )
                artifact_id = optuna.artifacts.upload_artifact(
                    artifact_store=self.artifact_store,
                    file_path=str(path),
                    study_or_trial=trial,
                    mimetype="application/octet-stream",
                )
            trial.set_user_attr("artifact_id", artifact_id)
        self._finish(trial, values=[result.map, float(result.patch_bytes)])

    def tell_failure(self, trial, error: BaseException | str) -> None:
        """Record a trial that raised: FAIL, with its error; the study goes on."""
        import optuna

        text = error if isinstance(error, str) else f"{type(error).__name__}: {error}"
        trial.set_user_attr("error", text[:2000])
        self._finish(trial, state=optuna.trial.TrialState.FAIL)

    def tell_interrupted(self, trial) -> None:
        """A trial stopped by the user (Ctrl-C): failed, and its config retried on resume."""
        self._heartbeat.remove(trial._trial_id)
        self._retry(trial._trial_id, trial.number, trial.params, "interrupted")

    def tell_pruned(self, trial, intermediate: list[tuple[int, float]]) -> None:
        """Record a trial stopped early, with the intermediate mAPs that stopped it."""
        import optuna

        trial.set_user_attr("pruned_at", intermediate[-1][0])
        trial.set_user_attr("intermediate", {str(s): v for s, v in intermediate})
        self._finish(trial, state=optuna.trial.TrialState.PRUNED)

    # -- early stopping -----------------------------------------------------------------------
    def early_stop_references(self, trial) -> list[dict[str, float]]:
        """Intermediate mAPs of the completed trials whose patch is no larger than ``trial``'s."""
        import optuna

        if self.early_stopping is None:
            return []
        size = self.space.patch_bytes(self.config_of(trial))
        return [
            t.user_attrs.get("intermediate", {})
            for t in self.trials()
            if t.state == optuna.trial.TrialState.COMPLETE and t.values[1] <= size
        ]

    def run(
        self,
        evaluator,
        total: int,
        *,
        on_trial: Callable[[StudyProgress], None] | None = None,
        seed: int = 0,
    ) -> StudyProgress:
        """Run trials in this process until the study has ``total``.

        A trial that raises is recorded FAIL and the study goes on; Ctrl-C fails the running
        trial, enqueues its config for the next run and re-raises.
        """
        import optuna

        fractions = self.early_stopping.checkpoints if self.early_stopping else ()
        while (trial := self.ask(total)) is not None:
            seen: list[tuple[int, float]] = []
            margin = self.early_stopping.margin if self.early_stopping else 0.0
            callback = early_stop_callback(self.early_stop_references(trial), margin, seen)
            try:
                result = evaluator.evaluate(
                    self.config_of(trial),
                    callback=callback,
                    fractions=fractions,
                    seed=seed + trial.number,
                )
            except optuna.TrialPruned:
                self.tell_pruned(trial, seen)
            except KeyboardInterrupt:
                self.tell_interrupted(trial)
                raise
            except Exception as e:  # a failing trial must not stop the study
                log.warning("trial %d failed: %s: %s", trial.number, type(e).__name__, e)
                self.tell_failure(trial, e)
            else:
                self.tell_result(trial, result)
            if on_trial is not None:
                on_trial(self.progress(total))
        return self.progress(total)


def early_stop_callback(
    references: list[dict[str, float]], margin: float, seen: list[tuple[int, float]]
) -> Callable[[int, float, float], None]:
    """The evaluator callback of one trial: records each intermediate mAP in ``seen`` and
    stops the trial (``optuna.TrialPruned``) when it is below a reference's mAP at the same
    step by more than ``margin``. References are the intermediate mAPs of finished trials with
    no more bytes, so a stopped trial is dominated at that point."""
    import optuna

    def callback(step: int, fraction: float, value: float) -> None:
        seen.append((step, value))
        for ref in references:
            other = ref.get(str(step))
            if other is not None and value < other - margin:
                raise optuna.TrialPruned(
                    f"mAP {value:.3f} at step {step} is below {other:.3f} of a trial with no "
                    f"more bytes"
                )

    return callback


def _write_tensors(tensors, path: Path) -> Path:
    from safetensors.torch import save_file

    save_file({k: v.contiguous() for k, v in tensors.items()}, str(path))
    return path
