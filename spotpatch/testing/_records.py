"""Trials made by hand, for tests of what reads them (fronts, answers, repeats, the report):
:func:`record`, a real :class:`~spotpatch.search.TrialRecord` with only the fields a test
names; :func:`completed_trial` and :func:`failed_trial`, Optuna trials stored as spotpatch
stores them, for ``study.add_trials``.
"""

from __future__ import annotations

from collections.abc import Mapping

from spotpatch.search import TrialRecord, completed_attrs, failed_attrs

__all__ = ["completed_trial", "failed_trial", "record"]


def completed_trial(result, **options):
    """A completed Optuna trial holding ``result`` (an ``EvalResult``) as a run stores it;
    ``options`` are :func:`~spotpatch.search.completed_attrs`' (``source``, ``preset``,
    ``duplicate_of``, ``repeat_of``, ``confirm``, ``artifact_id``...)."""
    import optuna

    return optuna.trial.create_trial(
        values=[result.map, float(result.patch_bytes)],
        user_attrs=completed_attrs(result, **options),
        state=optuna.trial.TrialState.COMPLETE,
    )


def failed_trial(error: str):
    """A failed Optuna trial with its error, as a run stores it."""
    import optuna

    return optuna.trial.create_trial(
        state=optuna.trial.TrialState.FAIL, user_attrs=failed_attrs(error)
    )


def record(
    number: int,
    sites: Mapping[str, str] | str | None,
    value: float | None,
    size: int,
    *,
    preset: str | None = None,
    state="COMPLETE",
    source: str = "sampler",
    duplicate_of: int | None = None,
    repeat_of: int | None = None,
    retry_of: int | None = None,
    confirm: tuple[int, str] | None = None,
    error: str | None = None,
    retried: bool = False,
) -> TrialRecord:
    """A trial record: ``sites`` a config ({site: kind}; a string ``s`` stands for
    ``{"s": s}``), ``value`` its mAP, ``size`` its bytes, ``state`` an Optuna ``TrialState``
    (or its name), ``confirm`` a confirmation run's (seed, stage).

    Example:
        >>> record(0, "full", 0.8, 100, preset="full").complete
        True
    """
    import optuna

    if isinstance(sites, str):
        sites = {"s": sites}
    states = optuna.trial.TrialState
    trial_state = state if isinstance(state, states) else states[state]
    scored = trial_state == optuna.trial.TrialState.COMPLETE or duplicate_of is not None
    return TrialRecord(
        number=number,
        state=trial_state,
        params={},
        sites=None if sites is None else dict(sites),
        map=value if scored else None,
        map50=None,
        test_map=None,
        patch_bytes=size,
        train_seconds=1.0,
        eval_seconds=0.0,
        intermediate=(),
        source="confirm" if confirm is not None else source,
        preset=preset,
        artifact_id=None,
        artifact_sha256=None,
        error=error,
        pruned_at=None,
        retry_of=retry_of,
        duplicate_of=duplicate_of,
        repeat_of=repeat_of,
        retried=retried,
        heartbeat=None,
        started=None,
        confirm_seed=None if confirm is None else confirm[0],
        confirm_stage=None if confirm is None else confirm[1],
    )
