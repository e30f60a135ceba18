"""The stored format of a spotpatch trial: what a trial records, read back as a TrialRecord.

A study outlives the code that wrote it, so its format has one owner: this module writes and
reads a trial, :mod:`._study_record` the study's own attributes, and every other place asks
them. Keys are constants here and nowhere else; readers get frozen records
(:class:`TrialRecord`), never ``user_attrs``. The format itself is Optuna's: trial user
attributes (plus two trial system attributes for the heartbeat), so the study also opens with
Optuna's own tools.

A trial stores:

- when asked: ``config`` ({site: kind}), ``patch_bytes``, ``preset`` (the fixed recipe it equals,
  if any); from its enqueueing, ``source`` (``preset``, ``relaxation``, ``retry``, ``repeat``,
  ``confirm``; none for the sampler's own), ``retry_of`` and ``repeat_of`` (the trial whose
  config it runs again with its own seed, to average out seed noise);
- a confirmation run (``source = "confirm"``: a config retrained past the study's total to
  confirm its answer, :mod:`._confirmation`) also stores ``confirm_seed`` (its training seed)
  and ``confirm_stage`` (``decide``: seeds that choose the answer; ``report``: fresh seeds that
  measure it). It is not a run of the search: it counts toward no total and stands on no front;
- when told: ``map``, ``map50``, ``test_map`` (where the task has a test split),
  ``patch_bytes``, ``train_seconds``, ``eval_seconds``, ``config``, ``summary``,
  ``intermediate`` ({step: mAP}), ``artifact_id`` (its patch tensors in the artifact store) and
  ``artifact_sha256`` (the sha256 of that file's bytes, checked by every reader; trials stored
  before it was recorded have none); or ``error`` (FAIL); or ``pruned_at`` and ``intermediate``
  (PRUNED);
- a config the sampler proposed again is not trained twice: its trial is told the stored result
  and records ``duplicate_of`` (the trial that trained it);
- system attributes ``spotpatch:heartbeat`` ({host, pid, time}) while it runs and
  ``spotpatch:retried`` once a later trial took over its config.

Each attribute is one row, as ``trial.set_user_attr`` stores it. On Optuna's RDBStorage the
attributes of one write (what a trial stores when asked, when told...) go in one transaction
(:func:`_write_attrs`): one commit where ``set_user_attr`` would commit each.

Imports only from ``spaces`` and ``evaluators``.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any

from spotpatch.spaces import PatchConfig

if TYPE_CHECKING:
    from spotpatch.evaluators import EvalResult

__all__ = [
    "SOURCES",
    "STAGES",
    "TrialRecord",
    "config_key",
    "trial_record",
    "trial_records",
    "enqueue_attrs",
    "queued_config",
    "source_of",
    "confirmation_seed",
    "write_asked",
    "write_result",
    "write_failure",
    "write_pruned",
    "write_duplicate",
    "mark_failed",
    "mark_retried",
    "write_heartbeat",
    "completed_attrs",
    "failed_attrs",
]

# -- keys --------------------------------------------------------------------------------------
FORMAT = 1

_HEARTBEAT = "spotpatch:heartbeat"  # trial system attributes
_RETRIED = "spotpatch:retried"

_CONFIG = "config"  # trial user attributes
_PATCH_BYTES = "patch_bytes"
_PRESET = "preset"
_SOURCE = "source"
_RETRY_OF = "retry_of"
_REPEAT_OF = "repeat_of"
_CONFIRM_SEED = "confirm_seed"
_CONFIRM_STAGE = "confirm_stage"
_MAP = "map"
_MAP50 = "map50"
_TEST_MAP = "test_map"
_TRAIN_SECONDS = "train_seconds"
_EVAL_SECONDS = "eval_seconds"
_SUMMARY = "summary"
_INTERMEDIATE = "intermediate"
_ARTIFACT_ID = "artifact_id"
_ARTIFACT_SHA256 = "artifact_sha256"
_ERROR = "error"
_PRUNED_AT = "pruned_at"
_DUPLICATE_OF = "duplicate_of"

#: Where a trial's config came from: the sampler, the warm start, a fixed recipe, a retry of a
#: trial that did not finish, a repeat of a finished one (another seed), or the confirmation of
#: the study's answer (past its total).
SOURCES = ("sampler", "relaxation", "preset", "retry", "repeat", "confirm")
#: A confirmation run's stage: ``decide`` (its seeds choose the answer) or ``report`` (fresh
#: seeds measure the chosen answer; nothing is decided on them).
STAGES = ("decide", "report")
_ERROR_CHARS = 2000


# -- a trial -----------------------------------------------------------------------------------
@dataclass(frozen=True)
class TrialRecord:
    """One trial as stored, whatever its state.

    Attributes:
        number: the Optuna trial number.
        state: the Optuna ``TrialState``.
        params: the gates the sampler chose (label -> kind).
        sites: the config as stored (site -> kind; sites not listed are shared); None before
            the trial was asked.
        map: val mAP in [0, 1] (completed trials).
        map50: val AP at IoU 0.5 (None when not recorded).
        test_map: mAP on the task's test split (None: no test split, or not recorded).
        patch_bytes: the patch payload in bytes.
        train_seconds: wall time of training.
        eval_seconds: wall time of the final scoring.
        intermediate: (step, val mAP) at each early-stopping checkpoint.
        source: one of :data:`SOURCES`.
        preset: the fixed recipe the config equals (``head``, ``full``...), else None.
        artifact_id: the patch tensors in the study's artifact store, else None.
        artifact_sha256: the sha256 of the stored file's bytes (None for trials stored before
            it was recorded: their tensors are read unchecked).
        error: why a failed trial failed.
        pruned_at: the step an early-stopped trial stopped at.
        retry_of: the trial whose config this one retries.
        repeat_of: the trial whose config this one runs again with its own seed.
        confirm_seed: a confirmation run's training seed (None: not one).
        confirm_stage: a confirmation run's stage (one of :data:`STAGES`; None: not one).
        duplicate_of: the trial that trained this config, when the sampler proposed it again
            (this trial holds that one's result and trained nothing).
        retried: a failed trial whose config a later trial took over.
        heartbeat: the last stamp of the process running it ({host, pid, time}).
        started: when it started (None while queued).
    """

    number: int
    state: Any
    params: Mapping[str, Any]
    sites: Mapping[str, str] | None
    map: float | None
    map50: float | None
    test_map: float | None
    patch_bytes: int | None
    train_seconds: float
    eval_seconds: float
    intermediate: tuple[tuple[int, float], ...]
    source: str
    preset: str | None
    artifact_id: str | None
    artifact_sha256: str | None
    error: str | None
    pruned_at: int | None
    retry_of: int | None
    duplicate_of: int | None
    repeat_of: int | None
    retried: bool
    confirm_seed: int | None
    confirm_stage: str | None
    heartbeat: Mapping[str, Any] | None
    started: datetime | None

    @property
    def complete(self) -> bool:
        """A run of the search, trained and scored (a duplicate's copied result aside, and
        confirmation runs, which are :attr:`confirmed`)."""
        return self._scored and self.confirm_stage is None

    @property
    def confirmed(self) -> bool:
        """A confirmation run, trained and scored."""
        return self._scored and self.confirm_stage is not None

    @property
    def _scored(self) -> bool:
        import optuna

        return (
            self.state == optuna.trial.TrialState.COMPLETE
            and self.map is not None
            and self.duplicate_of is None
        )

    @property
    def seconds(self) -> float:
        """What the trial cost: training plus final scoring."""
        return self.train_seconds + self.eval_seconds

    @functools.cached_property
    def config(self) -> PatchConfig | None:
        return None if self.sites is None else PatchConfig.from_dict(self.sites)

    @property
    def key(self) -> frozenset:
        """What identifies the trial's config (:func:`config_key`); a trial with no stored
        config stands alone."""
        if self.sites is None:
            return frozenset({("#", self.number)})
        return config_key(self.sites)

    @property
    def summary(self) -> str:
        """The config in short (``full x3, bn x12``); ``-`` before it was asked."""
        return "-" if self.config is None else self.config.summary()

    def counts_toward_total(self) -> bool:
        """Finished trials and running ones count; queued ones, retried failures, duplicates
        (nothing trained) and confirmation runs (past the total) do not."""
        import optuna

        if self.state == optuna.trial.TrialState.WAITING or self.duplicate_of is not None:
            return False
        if self.confirm_stage is not None:
            return False
        return not (self.state == optuna.trial.TrialState.FAIL and self.retried)


def config_key(sites: Mapping[str, str]) -> frozenset:
    """What identifies a config ({site: kind}): its runs, with whatever seeds, are one config's
    runs. An empty config (the class head alone) is a config like any other."""
    return frozenset(sites.items())


def _number(value: Any, kind: type) -> Any:
    return kind(value) if isinstance(value, int | float) and not isinstance(value, bool) else None


def trial_record(trial) -> TrialRecord:
    """A stored trial (an Optuna ``FrozenTrial``) as a :class:`TrialRecord`."""
    import optuna

    attrs = trial.user_attrs
    values = trial.values if trial.state == optuna.trial.TrialState.COMPLETE else None
    sites = attrs.get(_CONFIG)
    source = attrs.get(_SOURCE)
    if source not in SOURCES:  # older trials: presets carried no source
        source = "preset" if source is None and attrs.get(_PRESET) else "sampler"
    raw_steps = attrs.get(_INTERMEDIATE)
    intermediate = (
        tuple(sorted((int(s), float(v)) for s, v in raw_steps.items()))
        if isinstance(raw_steps, dict)
        else ()
    )
    beat = trial.system_attrs.get(_HEARTBEAT)
    stage = attrs.get(_CONFIRM_STAGE) if source == "confirm" else None
    return TrialRecord(
        number=trial.number,
        state=trial.state,
        params=dict(trial.params),
        sites=dict(sites) if isinstance(sites, dict) else None,
        map=float(values[0]) if values else _number(attrs.get(_MAP), float),
        map50=_number(attrs.get(_MAP50), float),
        test_map=_number(attrs.get(_TEST_MAP), float),
        patch_bytes=int(values[1]) if values else _number(attrs.get(_PATCH_BYTES), int),
        train_seconds=_number(attrs.get(_TRAIN_SECONDS), float) or 0.0,
        eval_seconds=_number(attrs.get(_EVAL_SECONDS), float) or 0.0,
        intermediate=intermediate,
        source=source,
        preset=str(attrs[_PRESET]) if attrs.get(_PRESET) else None,
        artifact_id=str(attrs[_ARTIFACT_ID]) if attrs.get(_ARTIFACT_ID) else None,
        artifact_sha256=str(attrs[_ARTIFACT_SHA256]) if attrs.get(_ARTIFACT_SHA256) else None,
        error=str(attrs[_ERROR]) if _ERROR in attrs else None,
        pruned_at=_number(attrs.get(_PRUNED_AT), int),
        retry_of=_number(attrs.get(_RETRY_OF), int),
        duplicate_of=_number(attrs.get(_DUPLICATE_OF), int),
        repeat_of=_number(attrs.get(_REPEAT_OF), int),
        retried=bool(trial.system_attrs.get(_RETRIED, False)),
        confirm_seed=_number(attrs.get(_CONFIRM_SEED), int) if stage in STAGES else None,
        confirm_stage=stage if stage in STAGES else None,
        heartbeat=beat if isinstance(beat, dict) else None,
        started=trial.datetime_start,
    )


def trial_records(study) -> list[TrialRecord]:
    """Every trial of a study, in number order."""
    return [trial_record(t) for t in study.get_trials(deepcopy=False)]


# -- writing a trial ---------------------------------------------------------------------------
def enqueue_attrs(
    source: str,
    *,
    retry_of: int | None = None,
    repeat_of: int | None = None,
    config: PatchConfig | None = None,
    confirm: tuple[int, str] | None = None,
) -> dict[str, Any]:
    """The attributes a queued trial carries (``study.enqueue_trial(..., user_attrs=)``).

    ``config`` is the config to train. The trial's params are its gates, which may only be the
    nearest ones (a fixed recipe in a coarser space): the config, not the gates, is trained.
    ``confirm``: a confirmation run's (seed, stage).
    """
    seed, stage = confirm if confirm is not None else (None, None)
    sites = None if config is None else config.to_dict()
    return _present(
        {
            _SOURCE: source,
            _RETRY_OF: retry_of,
            _REPEAT_OF: repeat_of,
            _CONFIG: sites,
            _CONFIRM_SEED: seed,
            _CONFIRM_STAGE: stage,
        }  # fmt: skip
    )


def source_of(trial) -> str:
    """Where a trial's config came from (one of :data:`SOURCES`), queued, running or stored."""
    source = trial.user_attrs.get(_SOURCE)
    return source if source in SOURCES else "sampler"


def confirmation_seed(trial) -> int | None:
    """A queued or running confirmation run's training seed (None: not one)."""
    seed = trial.user_attrs.get(_CONFIRM_SEED) if source_of(trial) == "confirm" else None
    return _number(seed, int)


def queued_config(trial) -> PatchConfig | None:
    """The config a running or queued trial carries, when it was queued with one."""
    sites = trial.user_attrs.get(_CONFIG)
    return PatchConfig.from_dict(sites) if isinstance(sites, dict) else None


def _asked_attrs(config: PatchConfig, patch_bytes: int, preset: str | None) -> dict[str, Any]:
    return _present({_CONFIG: config.to_dict(), _PATCH_BYTES: patch_bytes, _PRESET: preset})


def _result_attrs(
    result: EvalResult, artifact_id: str | None, artifact_sha256: str | None
) -> dict[str, Any]:
    return _present(
        {
            _MAP: result.map,
            _MAP50: result.map50,
            _TEST_MAP: result.test_map,
            _PATCH_BYTES: result.patch_bytes,
            _TRAIN_SECONDS: round(result.train_seconds, 3),
            _EVAL_SECONDS: round(result.eval_seconds, 3),
            _CONFIG: result.config.to_dict(),
            _SUMMARY: result.config.summary(),
            _INTERMEDIATE: {str(s): v for s, v in result.intermediate},
            _ARTIFACT_ID: artifact_id,
            _ARTIFACT_SHA256: artifact_sha256,
        }
    )


def _present(attrs: Mapping[str, Any]) -> dict[str, Any]:
    """The attributes that have a value (an absent one is not stored as None)."""
    return {k: v for k, v in attrs.items() if v is not None}


def _set_all(trial, attrs: Mapping[str, Any]) -> None:
    """Store ``attrs`` as user attributes of ``trial`` (an Optuna ``Trial``), as
    ``trial.set_user_attr`` does for each, in one transaction where the storage allows."""
    _write_attrs(trial.storage, trial._trial_id, attrs)
    trial._cached_frozen_trial.user_attrs.update(attrs)  # what set_user_attr keeps too


def _write_attrs(
    storage, trial_id: int, user: Mapping[str, Any], system: Mapping[str, Any] | None = None
) -> None:
    """Store a trial's user and system attributes, one row each as Optuna's setters store them.

    Optuna's public API commits each attribute on its own (a transaction, and on PostgreSQL a
    flush of the log, per key); on an RDBStorage they go here through its own per-attribute
    writer in one session: one commit, and all or none of them stored. Other storages (in
    memory, journal) take them one by one.
    """
    system = system or {}
    rdb = _rdb_storage(storage)
    if rdb is None:
        for key, value in user.items():
            storage.set_trial_user_attr(trial_id, key, value)
        for key, value in system.items():
            storage.set_trial_system_attr(trial_id, key, value)
        return
    from optuna.storages._rdb import models
    from optuna.storages._rdb.storage import _create_scoped_session

    rows = [(models.TrialUserAttributeModel, k, v) for k, v in user.items()]
    rows += [(models.TrialSystemAttributeModel, k, v) for k, v in system.items()]
    with _create_scoped_session(rdb.scoped_session, True) as session:
        for model, key, value in rows:
            rdb._set_trial_attr_without_commit(session, model, trial_id, key, value)


def _rdb_storage(storage):
    """The RDBStorage behind ``storage`` (a study's storage wraps it in a cache that writes
    through), when it has the writer that leaves the commit to its caller (Optuna >= 4.2);
    else None."""
    from optuna.storages import RDBStorage

    backend = getattr(storage, "_backend", storage)
    if isinstance(backend, RDBStorage) and hasattr(backend, "_set_trial_attr_without_commit"):
        return backend
    return None


def write_asked(trial, config: PatchConfig, patch_bytes: int, preset: str | None) -> None:
    """Record what a just-asked trial will train."""
    _set_all(trial, _asked_attrs(config, patch_bytes, preset))


def write_result(
    trial, result: EvalResult, artifact_id: str | None, artifact_sha256: str | None = None
) -> list[float]:
    """Record a scored trial's metrics and config, and where its patch tensors are stored
    (``artifact_id``) with the sha256 of the stored file; returns the values to tell."""
    _set_all(trial, _result_attrs(result, artifact_id, artifact_sha256))
    return [result.map, float(result.patch_bytes)]


def write_failure(trial, error: BaseException | str) -> None:
    """Record why a trial failed (its exception as ``Type: message``)."""
    text = error if isinstance(error, str) else f"{type(error).__name__}: {error}"
    trial.set_user_attr(_ERROR, text[:_ERROR_CHARS])


def write_pruned(trial, intermediate: Sequence[tuple[int, float]]) -> None:
    """Record an early-stopped trial: where it stopped and what it saw on the way."""
    steps = {str(s): v for s, v in intermediate}
    _set_all(trial, {_PRUNED_AT: intermediate[-1][0], _INTERMEDIATE: steps})


def write_duplicate(trial, of: TrialRecord) -> list[float]:
    """Record that ``trial`` proposes the config that trial ``of`` trained: it holds that
    trial's result and trains nothing. Returns the values to tell."""
    attrs = {
        _DUPLICATE_OF: of.number,
        _MAP: of.map,
        _PATCH_BYTES: of.patch_bytes,
        _CONFIG: dict(of.sites or {}),
        _MAP50: of.map50,
        _TEST_MAP: of.test_map,
        _ARTIFACT_ID: of.artifact_id,
        _ARTIFACT_SHA256: of.artifact_sha256,
    }
    _set_all(trial, _present(attrs))
    return [float(of.map), float(of.patch_bytes)]


def mark_failed(storage, trial_id: int, why: str) -> None:
    """Record, before failing it, why a trial failed (its config is not retried)."""
    storage.set_trial_user_attr(trial_id, _ERROR, why[:_ERROR_CHARS])


def mark_retried(storage, trial_id: int, why: str) -> None:
    """Record, before failing it, why a trial failed and that its config is retried."""
    _write_attrs(storage, trial_id, {_ERROR: why[:_ERROR_CHARS]}, {_RETRIED: True})


def write_heartbeat(storage, trial_id: int, beat: Mapping[str, Any]) -> None:
    """Stamp a running trial with the process that runs it."""
    storage.set_trial_system_attr(trial_id, _HEARTBEAT, dict(beat))


# -- what a finished trial stores, at once (trials made without running them) -----------------
def completed_attrs(
    result: EvalResult,
    *,
    source: str = "sampler",
    preset: str | None = None,
    artifact_id: str | None = None,
    artifact_sha256: str | None = None,
    duplicate_of: int | None = None,
    repeat_of: int | None = None,
    confirm: tuple[int, str] | None = None,
) -> dict[str, Any]:
    """The user attributes of a completed trial holding ``result``, as asking it and
    :func:`write_result` store them (with ``duplicate_of``: a proposal told that trial's result;
    with ``repeat_of``: a run of that trial's config with another seed; with ``confirm``: a
    confirmation run's (seed, stage)). For trials made without running them:
    ``spotpatch.testing.completed_trial``."""
    source = "confirm" if confirm is not None else source
    queued = enqueue_attrs(source, repeat_of=repeat_of, confirm=confirm)
    return _present(
        {
            **_asked_attrs(result.config, result.patch_bytes, preset),
            **_result_attrs(result, artifact_id, artifact_sha256),
            **(queued if source != "sampler" else {}),
            _DUPLICATE_OF: duplicate_of,
        }
    )


def failed_attrs(error: str) -> dict[str, Any]:
    """The user attributes of a failed trial, as :func:`write_failure` stores them."""
    return {_ERROR: error[:_ERROR_CHARS]}
