"""An Optuna sampler that improves the front where it stands: neighbours of front configs.

After the presets and the warm start, a study's front already holds good configs; random
crossover of gates rarely lands near them. :class:`NeighbourSampler` proposes a front config
with a few gates moved one kind up or down (``shared`` -> ``bn`` -> ... -> ``full``), and leaves
the rest of the trials to another sampler (NSGA-II by default) so the search keeps exploring.

Which gates move follows the warm start when the study has one: a gate moves up with the
relaxation's probability that it wants a stronger kind than it has, and down with the
probability that it wants a weaker one (read in the penalty phase nearest the config's size),
plus a floor so any move stays possible. Without a warm start every move is equally likely.

It relies on one convention of spotpatch studies: each gate's choices are ordered weakest kind
first (:meth:`spotpatch.spaces.PatchSpace.choices`). Any categorical study with ordered choices
can use it.

Imported lazily (by :func:`~spotpatch.search.make_sampler`): it imports Optuna.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import optuna

from spotpatch.search._record import RelaxationPhaseRecord, relaxation_record

__all__ = ["NeighbourSampler", "front_trials", "neighbour_moves"]

#: How many gates one proposal moves, with their odds.
_MOVES = (1, 2, 3)
_MOVE_ODDS = (0.5, 0.3, 0.2)


def front_trials(trials: Sequence[Any]) -> list[Any]:
    """The non-dominated completed trials of a (maximize, minimize) study, smallest first."""
    front: list[Any] = []
    for t in sorted(trials, key=lambda t: (t.values[1], -t.values[0], t.number)):
        if not front or t.values[0] > front[-1].values[0]:
            front.append(t)
    return front


def neighbour_moves(
    params: Mapping[str, Any],
    choices: Mapping[str, Sequence[Any]],
    probabilities: Mapping[str, Mapping[str, float]] | None,
    floor: float,
) -> list[tuple[str, int, float]]:
    """Every one-step move of a gate config as (gate, new choice index, weight).

    A move's weight is ``floor`` plus the relaxation's probability that the gate wants a kind
    on that side of its current one (0 without probabilities).
    """
    moves = []
    for gate, options in choices.items():
        if gate not in params or params[gate] not in options:
            continue
        i = list(options).index(params[gate])
        table = (probabilities or {}).get(gate) or {}
        for j, side in ((i - 1, options[: max(i, 0)]), (i + 1, options[i + 1 :])):
            if 0 <= j < len(options):
                moves.append((gate, j, floor + sum(float(table.get(str(k), 0.0)) for k in side)))
    return moves


class NeighbourSampler(optuna.samplers.BaseSampler):
    """Proposes neighbours of the study's Pareto front; another sampler does the rest.

    Args:
        base: the sampler for trials that explore (and for the start, before any trial
            completed). Default: NSGA-II.
        seed: seeds the choice of parent and moves.
        explore: the share of trials left to ``base``.
        floor: the weight every move has besides the warm start's guidance.
        attempts: neighbours drawn per trial before a trial falls back to ``base`` (a
            neighbour already tried is drawn again).

    Example:
        >>> sampler = NeighbourSampler(seed=0)  # doctest: +SKIP
        >>> study = optuna.create_study(directions=["maximize", "minimize"], sampler=sampler)
    """

    def __init__(
        self,
        base=None,
        *,
        seed: int | None = None,
        explore: float = 0.25,
        floor: float = 0.1,
        attempts: int = 20,
    ):
        self._base = base if base is not None else optuna.samplers.NSGAIISampler(seed=seed)
        self._rng = np.random.RandomState(seed)
        self._explore = explore
        self._floor = floor
        self._attempts = attempts
        self._proposals: dict[int, dict[str, Any]] = {}

    # -- Optuna's sampler interface -----------------------------------------------------------
    def reseed_rng(self) -> None:
        self._rng.seed()
        self._base.reseed_rng()

    def before_trial(self, study, trial) -> None:
        self._base.before_trial(study, trial)

    def after_trial(self, study, trial, state, values) -> None:
        self._proposals.pop(trial.number, None)
        self._base.after_trial(study, trial, state, values)

    def infer_relative_search_space(self, study, trial) -> dict[str, Any]:
        proposal = self._propose(study)
        if proposal is None:
            return self._base.infer_relative_search_space(study, trial)
        params, space = proposal
        self._proposals[trial.number] = params
        return space

    def sample_relative(self, study, trial, search_space) -> dict[str, Any]:
        params = self._proposals.get(trial.number)
        if params is not None:
            return {k: v for k, v in params.items() if k in search_space}
        return self._base.sample_relative(study, trial, search_space)

    def sample_independent(self, study, trial, param_name, param_distribution) -> Any:
        return self._base.sample_independent(study, trial, param_name, param_distribution)

    # -- proposing ----------------------------------------------------------------------------
    def _propose(self, study) -> tuple[dict[str, Any], dict[str, Any]] | None:
        states = (optuna.trial.TrialState.COMPLETE,)
        done = [
            t for t in study.get_trials(deepcopy=False, states=states) if len(t.values or ()) == 2
        ]
        if not done or self._rng.uniform() < self._explore:
            return None
        space = optuna.search_space.intersection_search_space(done)
        choices = {
            name: tuple(d.choices)
            for name, d in space.items()
            if isinstance(d, optuna.distributions.CategoricalDistribution)
        }
        if not choices:
            return None
        tried = {_key(t.params) for t in study.get_trials(deepcopy=False)}
        front = front_trials(done)
        phases = _phases(study)
        for _ in range(self._attempts):
            parent = front[self._rng.randint(len(front))]
            probabilities = _nearest_phase(phases, parent.values[1])
            params = self._neighbour(dict(parent.params), choices, probabilities)
            if params is not None and _key(params) not in tried:
                return params, space
        return None

    def _neighbour(
        self,
        params: dict[str, Any],
        choices: Mapping[str, Sequence[Any]],
        probabilities: Mapping[str, Mapping[str, float]] | None,
    ) -> dict[str, Any] | None:
        count = int(self._rng.choice(_MOVES, p=_MOVE_ODDS))
        moved: set[str] = set()
        for _ in range(count):
            moves = [
                m for m in neighbour_moves(params, choices, probabilities, self._floor)
                if m[0] not in moved
            ]  # fmt: skip
            if not moves:
                break
            weights = np.array([w for _, _, w in moves], dtype=float)
            gate, j, _ = moves[self._rng.choice(len(moves), p=weights / weights.sum())]
            params[gate] = choices[gate][j]
            moved.add(gate)
        return params if moved else None


def _key(params: Mapping[str, Any]) -> tuple:
    return tuple(sorted((k, str(v)) for k, v in params.items()))


def _phases(study) -> tuple[RelaxationPhaseRecord, ...]:
    record = relaxation_record(study)
    return record.phases if record is not None else ()


def _nearest_phase(
    phases: Sequence[RelaxationPhaseRecord], patch_bytes: float
) -> Mapping[str, Mapping[str, float]] | None:
    """The per-gate probabilities of the penalty phase whose config is nearest in size."""
    sized = [p for p in phases if p.patch_bytes is not None and p.probabilities]
    if not sized:
        return None
    return min(sized, key=lambda p: abs(p.patch_bytes - patch_bytes)).probabilities
