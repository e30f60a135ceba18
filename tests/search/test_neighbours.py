"""The neighbour sampler on plain Optuna studies (no training): proposals are one-step moves of
front configs, never repeat a tried config, and follow the warm start's probabilities."""

from __future__ import annotations

import optuna
import pytest

from spotpatch.search import (
    NeighbourSampler,
    RelaxationPhase,
    RelaxationResult,
    make_sampler,
    write_relaxation,
)
from spotpatch.search._neighbours import (
    front_trials,
    group_moves,
    neighbour_moves,
)
from spotpatch.spaces import PatchConfig

KINDS = ("shared", "bn", "dw", "full")
GATES = [f"g{i}" for i in range(6)]
DIST = optuna.distributions.CategoricalDistribution(KINDS)


def _study(sampler):
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    return optuna.create_study(directions=["maximize", "minimize"], sampler=sampler)


def _values(params):
    """A toy (mAP, bytes): the first gate matters, the others only cost."""
    levels = [KINDS.index(params[g]) for g in GATES]
    return 0.2 + 0.2 * levels[0] - 0.01 * sum(levels[1:]), float(1 + sum(levels))


def _run(study, n):
    for _ in range(n):
        trial = study.ask({g: DIST for g in GATES})
        study.tell(trial, _values(trial.params))


def _steps(a, b):
    return {g: abs(KINDS.index(a[g]) - KINDS.index(b[g])) for g in GATES if a[g] != b[g]}


def test_moves_weigh_the_warm_starts_wishes():
    params = {"a": "bn", "b": "shared"}
    choices = {"a": KINDS, "b": KINDS}
    wishes = {"a": {"full": 0.9, "shared": 0.1}, "b": {"shared": 1.0}}
    moves = {(g, j): w for g, j, w in neighbour_moves(params, choices, wishes, 0.1)}
    assert moves == pytest.approx({("a", 0): 0.2, ("a", 2): 1.0, ("b", 1): 0.1})
    # Without a warm start every move weighs the floor.
    assert set(w for _, _, w in neighbour_moves(params, choices, None, 0.1)) == {0.1}


def test_group_moves_set_a_groups_gates_to_one_kind():
    params = {"a": "bn", "b": "shared", "c": "bn"}
    choices = {"a": KINDS, "b": ("shared", "bn", "full"), "c": KINDS}
    wishes = {"a": {"full": 1.0}, "b": {"full": 0.5, "bn": 0.5}}
    moves = group_moves(params, choices, {"s": ["a", "b"]}, wishes, 0.1)
    assert [(change, pytest.approx(w)) for change, w in moves] == [
        ({"a": "shared"}, 0.1),
        ({"b": "bn"}, 0.35),
        ({"a": "dw"}, 0.1),  # b offers no dw: it stays
        ({"a": "full", "b": "full"}, 0.85),
    ]


def test_front_trials_are_the_non_dominated_ones():
    study = _study(optuna.samplers.RandomSampler(seed=0))
    _run(study, 12)
    front = front_trials(study.trials)
    assert {t.number for t in front} == {t.number for t in study.best_trials}


def test_proposals_are_untried_one_step_neighbours_of_the_front():
    sampler = NeighbourSampler(optuna.samplers.RandomSampler(seed=0), seed=0, explore=0.0)
    study = _study(sampler)
    _run(study, 3)  # the first trial has no front: the base sampler proposes it
    for _ in range(15):
        before = list(study.trials)
        front = front_trials(before)
        trial = study.ask({g: DIST for g in GATES})
        params = trial.params
        assert all(params != t.params for t in before), "a tried config proposed again"
        near = [_steps(params, t.params) for t in front]
        assert any(1 <= len(s) <= 3 and set(s.values()) == {1} for s in near)
        study.tell(trial, _values(params))


def test_the_warm_start_guides_which_gates_move():
    def moves_of_g0(with_wishes: bool, seed: int) -> int:
        base = optuna.samplers.RandomSampler(seed=seed)
        study = _study(NeighbourSampler(base, seed=seed, explore=0))
        if with_wishes:
            # The relaxation wants g0 at full and every other gate where it is.
            wishes = {g: {"bn": 1.0} for g in GATES} | {"g0": {"full": 1.0}}
            phase = RelaxationPhase(0.0, PatchConfig(), 1, wishes)
            write_relaxation(study, RelaxationResult((phase,), seconds=1.0, steps=1))
        study.enqueue_trial({g: "bn" for g in GATES})
        _run(study, 1)
        # Proposals left running: the one completed trial stays the only parent.
        proposals = [study.ask({g: DIST for g in GATES}).params for _ in range(30)]
        return sum(p["g0"] != "bn" for p in proposals)

    guided = sum(moves_of_g0(True, seed) for seed in range(3))
    blind = sum(moves_of_g0(False, seed) for seed in range(3))
    assert guided > 1.5 * blind, (guided, blind)


def test_neighbours_by_name_runs_nsga2_for_the_rest():
    sampler = make_sampler("neighbours", 0)
    study = _study(sampler)
    _run(study, 20)
    assert len({tuple(sorted(t.params.items())) for t in study.trials}) == 20


def test_with_groups_a_proposal_can_set_a_whole_group():
    sampler = NeighbourSampler(
        optuna.samplers.RandomSampler(seed=0),
        seed=0,
        explore=0.0,
        groups={"early": GATES[:3], "late": GATES[3:]},
        group_share=1.0,
    )
    study = _study(sampler)
    study.enqueue_trial({g: "bn" for g in GATES})
    _run(study, 1)
    for _ in range(10):  # proposals left running: the enqueued trial stays the only parent
        params = study.ask({g: DIST for g in GATES}).params
        changed = {g: k for g, k in params.items() if k != "bn"}
        assert changed, "a proposal differs from its parent"
        early = {k for g, k in changed.items() if g in GATES[:3]}
        late = {k for g, k in changed.items() if g in GATES[3:]}
        # Each group moved as one: all its gates or none, to a single kind.
        for part, gates in ((early, GATES[:3]), (late, GATES[3:])):
            assert len(part) <= 1
            if part:
                assert all(params[g] == next(iter(part)) for g in gates)
