"""Trial records made by hand, for tests of what reads them (fronts, answers, repeats, the
report): real :class:`~spotpatch.search.TrialRecord` objects with only the fields a test names.
"""

from __future__ import annotations

from collections.abc import Mapping

from spotpatch.search import TrialRecord

__all__ = ["record"]


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
