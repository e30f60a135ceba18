"""An Optuna sampler that improves the front where it stands: neighbours of front configs.

After the presets and the warm start, a study's front already holds good configs; random
crossover of gates rarely lands near them. :class:`NeighbourSampler` proposes a front config
changed by one to three moves, and leaves the rest of the trials to another sampler (NSGA-II by
default) so the search keeps exploring. A move is either

- a gate moved one kind up or down (``shared`` -> ``bn`` -> ... -> ``full``), or
- with ``groups`` (gates that belong together: a detector stage), every gate of a group set to
  one kind: placement matters more than size, and a stage patched fully is one move away
  instead of a dozen.

Which moves are drawn follows the warm start when the study has one: a gate moves up with the
relaxation's probability that it wants a stronger kind than it has, and down with the
probability that it wants a weaker one; a group goes to a kind with its gates' mean probability
of that kind (read in the penalty phase nearest the config's size); every move has a floor on
top, so any move stays possible. Without a warm start every move is equally likely.

It relies on one convention of spotpatch studies: each gate's choices are ordered weakest kind
first (:meth:`spotpatch.spaces.PatchSpace.choices`). Any categorical study with ordered choices
can use it.

With ``descent``, the sampler first walks down from the accurate end
(:mod:`._descent`); neighbours follow when the descent has nothing left to try.

Imported lazily (by :func:`~spotpatch.search.make_sampler`): it imports Optuna.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np
import optuna

from spotpatch.search._descent import next_descent, params_key
from spotpatch.search._pareto import FrontPoint, pareto_front
from spotpatch.search._record import source_of
from spotpatch.search._study_record import RelaxationPhaseRecord, relaxation_record

__all__ = [
    "NeighbourSampler",
    "front_trials",
    "neighbour_moves",
    "group_moves",
]

#: How many gates one proposal moves, with their odds.
_MOVES = (1, 2, 3)
_MOVE_ODDS = (0.5, 0.3, 0.2)


def front_trials(trials: Sequence[Any]) -> list[Any]:
    """The non-dominated completed trials of a (maximize mAP, minimize bytes) study, smallest
    first (:func:`~spotpatch.search.pareto_front` on their values)."""
    by_number = {t.number: t for t in trials}
    points = [FrontPoint(t.number, t.values[0], t.values[1]) for t in trials]
    return [by_number[p.number] for p in pareto_front(points)]


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


def group_moves(
    params: Mapping[str, Any],
    choices: Mapping[str, Sequence[Any]],
    groups: Mapping[str, Sequence[str]],
    probabilities: Mapping[str, Mapping[str, float]] | None,
    floor: float,
) -> list[tuple[dict[str, Any], float]]:
    """Every move that sets each gate of a group that offers a kind to that kind, as (the
    gates it changes -> their new choice, weight); moves that change nothing are left out.

    A move's weight is ``floor`` plus the mean, over the group's gates, of the relaxation's
    probability of that kind.
    """
    moves = []
    for members in groups.values():
        gates = [g for g in members if g in params and g in choices]
        kinds = dict.fromkeys(k for g in gates for k in choices[g])
        for kind in kinds:
            change = {g: kind for g in gates if kind in choices[g] and params[g] != kind}
            if not change:
                continue
            wish = [float(((probabilities or {}).get(g) or {}).get(str(kind), 0.0)) for g in gates]
            moves.append((change, floor + sum(wish) / len(wish)))
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
        groups: gates that belong together, a detector stage each (group name -> gate
            names): the stages the descent walks, and the groups of group moves (those of two
            gates or more).
        group_share: the share of moves that are group moves, when there are groups.
        descent: with groups, first walk down from the accurate end, stage by stage (see the
            module's doc): the tolerance, in score units, within which a cheaper config counts
            as keeping the score of the study's largest config. ``None``: no descent.
        cost: the size of a config (gate params -> bytes), to try the biggest savings first;
            without it, the number of gate steps a move takes stands for its saving.
        min_saving: descent proposals that save less than this share of the largest config's
            size are not worth a trial.

    Example:
        >>> sampler = NeighbourSampler(seed=0)
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
        groups: Mapping[str, Sequence[str]] | None = None,
        group_share: float = 0.5,
        descent: float | None = None,
        cost: Callable[[Mapping[str, Any]], float] | None = None,
        min_saving: float = 0.01,
    ):
        self._base = base if base is not None else optuna.samplers.NSGAIISampler(seed=seed)
        self._rng = np.random.RandomState(seed)
        self._explore = explore
        self._floor = floor
        self._attempts = attempts
        self._proposals: dict[int, dict[str, Any]] = {}
        # The descent walks every stage, one gate or many (a detector's extra layers are one
        # gate each, and large); a group move on a one-gate group is a plain gate move.
        self._stages = {k: tuple(v) for k, v in (groups or {}).items() if v}
        self._groups = {k: v for k, v in self._stages.items() if len(v) > 1}
        self._group_share = group_share if self._groups else 0.0
        self._descent = descent if self._stages else None
        self._cost = cost
        self._min_saving = min_saving

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
            t
            for t in study.get_trials(deepcopy=False, states=states)
            if len(t.values or ()) == 2
            and source_of(t) != "confirm"  # confirmation: past the search
        ]
        if not done:
            return None
        space = optuna.search_space.intersection_search_space(done)
        choices = {
            name: tuple(d.choices)
            for name, d in space.items()
            if isinstance(d, optuna.distributions.CategoricalDistribution)
        }
        if not choices:
            return None
        tried = {params_key(t.params) for t in study.get_trials(deepcopy=False)}
        if self._descent is not None:
            params = next_descent(
                done, choices, tried, self._descent, self._stages, self._cost, self._min_saving
            )
            if params is not None:
                return params, space
        if self._rng.uniform() < self._explore:
            return None
        front = front_trials(done)
        phases = _phases(study)
        for _ in range(self._attempts):
            parent = front[self._rng.randint(len(front))]
            probabilities = _nearest_phase(phases, parent.values[1])
            params = self._neighbour(dict(parent.params), choices, probabilities)
            if params is not None and params_key(params) not in tried:
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
            if self._rng.uniform() < self._group_share:
                options = [
                    (change, w)
                    for change, w in group_moves(
                        params, choices, self._groups, probabilities, self._floor
                    )
                    if not moved & set(change)
                ]
            else:
                options = [
                    ({gate: choices[gate][j]}, w)
                    for gate, j, w in neighbour_moves(params, choices, probabilities, self._floor)
                    if gate not in moved
                ]
            if not options:
                continue
            weights = np.array([w for _, w in options], dtype=float)
            change, _ = options[self._rng.choice(len(options), p=weights / weights.sum())]
            params.update(change)
            moved |= set(change)
        return params if moved else None


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
