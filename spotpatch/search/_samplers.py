"""Optuna samplers by name, all seeded, all multi-objective."""

from __future__ import annotations

from spotpatch._errors import UserError
from spotpatch.search._units import DEFAULT_TOLERANCE, from_points

__all__ = ["make_sampler", "SAMPLER_NAMES"]

SAMPLER_NAMES = ("nsga2", "neighbours", "descent", "tpe", "gp", "random")


def make_sampler(
    name: str,
    seed: int,
    *,
    population: int = 8,
    groups=None,
    cost=None,
    tolerance: float = DEFAULT_TOLERANCE,
):
    """An Optuna sampler for a two-objective study.

    ``nsga2``: NSGA-II with a small population (our trials are expensive); ``neighbours``:
    neighbours of the front's configs, guided by the warm start, with NSGA-II for a quarter of
    the trials (:class:`~spotpatch.search.NeighbourSampler`); ``descent``: first a descent
    from the accurate end, one stage made cheaper per trial while the score of the largest config
    (the full fine-tune) holds within half the tolerance, then ``neighbours``; ``tpe``:
    multivariate multi-objective TPE; ``gp``: Optuna's GPSampler (log-EHVI), made for small
    budgets of expensive trials; ``random``: the baseline.

    ``groups`` (group name -> gate names: the gates of one detector stage, as
    :meth:`spotpatch.spaces.PatchSpace.stage_gates` gives them) lets ``neighbours`` set a whole
    group at once and is what ``descent`` walks down; ``cost`` (gate params -> bytes,
    :meth:`spotpatch.spaces.PatchSpace.gates_bytes`) orders the descent's proposals by their
    savings. The other samplers ignore both. ``tolerance`` (mAP points): the study's, what its
    answer may lose against the full fine-tune; the descent keeps a cheaper config when it
    falls no more than half of it below the largest config's score, a margin against the seed
    noise of the one or two runs it decides on.
    """
    import warnings

    import optuna

    # TPE's group and constant liar options are marked experimental; we rely on them knowingly.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        return _make(name, seed, population, groups, cost, tolerance)


def _make(name: str, seed: int, population: int, groups, cost, tolerance: float):
    import optuna

    if name == "nsga2":
        return optuna.samplers.NSGAIISampler(population_size=population, seed=seed)
    if name in ("neighbours", "descent"):
        from spotpatch.search._neighbours import NeighbourSampler

        base = optuna.samplers.NSGAIISampler(population_size=population, seed=seed)
        descent = from_points(tolerance) / 2 if name == "descent" else None
        return NeighbourSampler(base, seed=seed, groups=groups, descent=descent, cost=cost)
    if name == "tpe":
        return optuna.samplers.TPESampler(
            multivariate=True,
            group=True,
            n_startup_trials=population,
            seed=seed,
            constant_liar=True,
        )
    if name == "gp":
        return optuna.samplers.GPSampler(
            seed=seed, n_startup_trials=population, warn_independent_sampling=False
        )
    if name == "random":
        return optuna.samplers.RandomSampler(seed=seed)
    raise UserError(f"unknown sampler {name!r} (expected one of {', '.join(SAMPLER_NAMES)})")
