"""The descent: walking down a study's front from the accurate end, one stage at a time.

It takes the smallest config whose score is within ``tolerance`` of the score of the study's
largest config (the full fine-tune, when the study runs that preset; a config run more than once,
``search.repeats``, scores the mean of its runs) and proposes it with one stage made cheaper:
the stage shared, or, where sharing it was tried and cost too much, the stage one kind weaker. A
proposal that keeps the score within the tolerance becomes the next starting point; one that does
not rules out anything weaker everywhere (a config at most as strong on every gate as one that
fell short). Biggest savings first, each proposal one trial: the search measures what each stage
is worth to the task, which neighbour moves of small configs do not reach. The mark is the
largest config's own score, not the best score in the study: a single run moves by about a
point with its seed, and the best of many runs overstates what the accurate end reaches.

:class:`~spotpatch.search.NeighbourSampler` runs it first when given ``descent`` (the
``descent`` sampler of :func:`~spotpatch.search.make_sampler`). It relies on each gate's choices
being ordered weakest kind first (:meth:`spotpatch.spaces.PatchSpace.choices`).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

from spotpatch.search._record import trial_record
from spotpatch.search._units import mean_sd

__all__ = ["descent_moves", "next_descent", "params_key"]


def params_key(params: Mapping[str, Any]) -> tuple:
    """What identifies a trial of any study by its gate params (a proposal is params)."""
    return tuple(sorted((k, str(v)) for k, v in params.items()))


def _ranks(choices: Mapping[str, Sequence[Any]]) -> dict[str, int]:
    """One strength rank per kind across gates (gates offer different subsets of one order)."""
    rank: dict[str, int] = {}
    for options in choices.values():
        for i, kind in enumerate(options):
            rank[str(kind)] = max(rank.get(str(kind), 0), i)
    return rank


def _weaker_or_equal(a: Mapping[str, Any], b: Mapping[str, Any], rank: Mapping[str, int]) -> bool:
    """Whether config ``a`` is at most as strong as ``b`` on every gate of ``b``."""
    return all(rank[str(a.get(g, v))] <= rank[str(v)] for g, v in b.items())


def descent_moves(
    params: Mapping[str, Any],
    choices: Mapping[str, Sequence[Any]],
    groups: Mapping[str, Sequence[str]],
) -> list[tuple[str, int, dict[str, Any]]]:
    """The descent's candidates from a config, as (stage, step, new config): for each stage
    that has a gate stronger than its weakest kind, the stage shared (step 0: every gate at its
    weakest kind) and the stage one kind weaker (step 1: every gate above the stage's strongest
    kind's next weaker one set to the strongest kind it offers at or below it).
    """
    rank = _ranks(choices)
    order = sorted(rank, key=rank.get)
    moves = []
    for stage, members in groups.items():
        gates = [g for g in members if g in params and g in choices]
        if not gates:
            continue
        top = max(rank[str(params[g])] for g in gates)
        below = [k for k in order if rank[k] < top]
        targets = [(0, order[0])] + ([(1, below[-1])] if below and below[-1] != order[0] else [])
        for step, target in targets:
            new = dict(params)
            for g in gates:
                fits = [k for k in choices[g] if rank[str(k)] <= rank[target]]
                if rank[str(params[g])] > rank[target] and fits:
                    new[g] = fits[-1]
            if new != dict(params):
                moves.append((stage, step, new))
    return moves


def next_descent(
    done: Sequence[Any],
    choices: Mapping[str, Sequence[Any]],
    tried: set[tuple],
    tolerance: float,
    stages: Mapping[str, Sequence[str]],
    cost: Callable[[Mapping[str, Any]], float] | None = None,
    min_saving: float = 0.01,
) -> dict[str, Any] | None:
    """The descent's next proposal (gate params), or None when it has nothing left to try.

    Args:
        done: the study's completed trials (Optuna ``FrozenTrial``), confirmation runs left out.
        choices: each gate's kinds, weakest first.
        tried: :func:`params_key` of every trial asked so far (never proposed again).
        tolerance: score units within which a cheaper config keeps the largest config's score.
        stages: the stages it walks (stage -> gates).
        cost: a config's size (gate params -> bytes); without it, gate steps stand for it.
        min_saving: proposals saving less than this share of the largest config are skipped.
    """
    # Each config at the mean of its runs (repeats with other seeds); duplicates are none. A
    # spotpatch trial is its config (a preset's params may be only the nearest gates); a
    # trial of any other study is its params.
    runs: dict[Any, list[Any]] = {}
    for t in done:
        record = trial_record(t)
        if record.complete:
            key = record.key if record.sites is not None else params_key(t.params)
            runs.setdefault(key, []).append(t)
    configs = [
        (ts[0].params, mean_sd([t.values[0] for t in ts])[0], ts[0].values[1])
        for ts in runs.values()
    ]
    if not configs:
        return None
    # The mark: the score of the largest config (the full fine-tune), not the best score.
    mark = max(configs, key=lambda c: (c[2], c[1]))[1] - tolerance
    kept = [c for c in configs if c[1] >= mark]
    short = [c[0] for c in configs if c[1] < mark]
    start = min(kept, key=lambda c: (c[2], -c[1]))
    params = {g: v for g, v in start[0].items() if g in choices}
    if len(params) != len(choices):
        return None
    rank = _ranks(choices)
    size = cost or (lambda p: sum(rank[str(v)] for v in p.values()))
    largest = size({g: options[-1] for g, options in choices.items()})
    here = size(params)
    candidates = []
    for _, step, new in descent_moves(params, choices, stages):
        if params_key(new) in tried or any(_weaker_or_equal(new, f, rank) for f in short):
            continue
        saving = here - size(new)
        if saving >= min_saving * largest:
            candidates.append((step, -saving, new))
    if not candidates:
        return None
    return min(candidates, key=lambda c: c[:2])[2]
