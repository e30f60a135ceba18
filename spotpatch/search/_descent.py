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

The *ascent* closes the same gap from below, where the descent alone takes many steps: a task
that needs its features adapted keeps nothing much smaller than the full fine-tune for a dozen
trials, while a strong small recipe (rank-4 deltas everywhere) falls a few points short and one
stage trained fully would bring it back. When the smallest config that keeps the mark is more
than ``gap`` times the size of a config that falls short by at most ``reach`` tolerances, the
ascent proposes the smallest such config with one stage made stronger (one kind, or to its
strongest), the cheapest addition first, and only below the smallest kept config's size. The
sampler takes the descent's and the ascent's proposals in turn.

:class:`~spotpatch.search.NeighbourSampler` runs it first when given ``descent`` (the
``descent`` sampler of :func:`~spotpatch.search.make_sampler`). It relies on each gate's choices
being ordered weakest kind first (:meth:`spotpatch.spaces.PatchSpace.choices`).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

from spotpatch.search._record import trial_record
from spotpatch.search._units import mean_sd

__all__ = ["ascent_moves", "descent_moves", "next_ascent", "next_descent", "params_key"]


def params_key(params: Mapping[str, Any]) -> tuple:
    """What identifies a trial of any study by its gate params (a proposal is params)."""
    return tuple(sorted((k, str(v)) for k, v in params.items()))


def _configs_at_means(done: Sequence[Any]) -> list[tuple[Mapping[str, Any], float, float]]:
    """Each config of the completed trials as (params, mean score, bytes): a config run more
    than once (repeats with other seeds) at the mean of its runs."""
    # A spotpatch trial is its config (a preset's params may be only the nearest gates); a
    # trial of any other study is its params.
    runs: dict[Any, list[Any]] = {}
    for t in done:
        record = trial_record(t)
        if record.complete:
            key = record.key if record.sites is not None else params_key(t.params)
            runs.setdefault(key, []).append(t)
    return [
        (ts[0].params, mean_sd([t.values[0] for t in ts])[0], ts[0].values[1])
        for ts in runs.values()
    ]


def _mark(configs: Sequence[tuple[Mapping[str, Any], float, float]], tolerance: float) -> float:
    """The score a config keeps: the largest config's (the full fine-tune), not the best score,
    less ``tolerance``."""
    return max(configs, key=lambda c: (c[2], c[1]))[1] - tolerance


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
    moves = []
    for stage, gates, rank, top in _stages_at(params, choices, groups):
        below = [k for k in sorted(rank, key=rank.get) if rank[k] < top]
        weakest = min(rank, key=rank.get)
        targets = [(0, weakest)] + ([(1, below[-1])] if below and below[-1] != weakest else [])
        for step, target in targets:
            new = _stage_to(params, choices, gates, target, up=False)
            if new != dict(params):
                moves.append((stage, step, new))
    return moves


def _stages_at(params, choices, groups):
    """Per stage with a gate in ``params``: (stage, its gates, each kind's strength rank, the
    rank of the stage's strongest kind)."""
    rank = _ranks(choices)
    for stage, members in groups.items():
        gates = [g for g in members if g in params and g in choices]
        if gates:
            yield stage, gates, rank, max(rank[str(params[g])] for g in gates)


def _stage_to(params, choices, gates, target, *, up: bool) -> dict[str, Any]:
    """``params`` with each of ``gates`` moved to ``target``'s strength: down (those above it
    to the strongest kind they offer at or below it) or up (those below it to the weakest they
    offer at or above it)."""
    rank = _ranks(choices)
    new = dict(params)
    for g in gates:
        here = rank[str(params[g])]
        if up:
            fits = [k for k in choices[g] if rank[str(k)] >= rank[target]]
            if here < rank[target] and fits:
                new[g] = fits[0]
        else:
            fits = [k for k in choices[g] if rank[str(k)] <= rank[target]]
            if here > rank[target] and fits:
                new[g] = fits[-1]
    return new


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
    configs = _configs_at_means(done)
    if not configs:
        return None
    mark = _mark(configs, tolerance)
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


def ascent_moves(
    params: Mapping[str, Any],
    choices: Mapping[str, Sequence[Any]],
    groups: Mapping[str, Sequence[str]],
) -> list[tuple[str, dict[str, Any]]]:
    """The ascent's candidates from a config, as (stage, new config): for each stage with a
    gate below the strongest kind it offers, the stage one kind stronger (every gate below the
    kind after the stage's strongest set to the weakest kind it offers at or above it) and the
    stage at its strongest kinds; one move where the two are the same."""
    moves = []
    for stage, gates, rank, top in _stages_at(params, choices, groups):
        above = [k for k in sorted(rank, key=rank.get) if rank[k] > top]
        for target in dict.fromkeys(above[:1] + above[-1:]):
            new = _stage_to(params, choices, gates, target, up=True)
            if new != dict(params):
                moves.append((stage, new))
    return moves


def next_ascent(
    done: Sequence[Any],
    choices: Mapping[str, Sequence[Any]],
    tried: set[tuple],
    tolerance: float,
    stages: Mapping[str, Sequence[str]],
    cost: Callable[[Mapping[str, Any]], float] | None = None,
    min_saving: float = 0.01,
    reach: float = 8.0,
    gap: float = 2.0,
) -> dict[str, Any] | None:
    """The ascent's next proposal (gate params), or None (see the module's doc).

    Args as :func:`next_descent`'s (``min_saving``: additions of less than this share of the
    largest config are not worth a trial), and:
        reach: a short config starts the ascent when its score is within ``reach`` times
            ``tolerance`` of the mark.
        gap: the ascent runs while the smallest kept config is more than ``gap`` times the size
            of its start.
    """
    configs = _configs_at_means(done)
    if not configs:
        return None
    mark = _mark(configs, tolerance)
    rank = _ranks(choices)
    size = cost or (lambda p: sum(rank[str(v)] for v in p.values()))
    largest = size({g: options[-1] for g, options in choices.items()})
    # Each config's size as the proposals' (a config whose params miss a gate is not sized).
    sized = []
    for config, score, _ in configs:
        params = {g: v for g, v in config.items() if g in choices}
        if len(params) == len(choices):
            sized.append((params, score, size(params)))
    short = [c[0] for c in configs if c[1] < mark]
    ceiling = min([s for _, score, s in sized if score >= mark], default=largest)
    starts = sorted(
        (c for c in sized if mark - reach * tolerance <= c[1] < mark and c[2] * gap < ceiling),
        key=lambda c: c[2],
    )
    for params, _, here in starts:
        candidates = []
        for _, new in ascent_moves(params, choices, stages):
            added = size(new) - here
            if (
                params_key(new) in tried
                or added < min_saving * largest
                or size(new) >= ceiling
                or any(_weaker_or_equal(new, f, rank) for f in short)
            ):
                continue
            candidates.append((added, new))
        if candidates:
            return min(candidates, key=lambda c: c[0])[1]
    return None
