"""The descent on plain Optuna studies (no training): from the accurate end, one stage at a time,
on the means of configs run more than once, with the study's tolerance."""

from __future__ import annotations

import optuna

from spotpatch.search import NeighbourSampler, make_sampler
from spotpatch.search._descent import descent_moves

KINDS = ("shared", "bn", "dw", "full")
GATES = [f"g{i}" for i in range(6)]
DIST = optuna.distributions.CategoricalDistribution(KINDS)


def _study(sampler):
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    return optuna.create_study(directions=["maximize", "minimize"], sampler=sampler)


def test_descent_moves_share_a_stage_or_take_it_one_kind_down():
    choices = {"a": KINDS, "b": ("shared", "bn", "full"), "c": KINDS}
    params = {"a": "full", "b": "full", "c": "dw"}
    moves = descent_moves(params, choices, {"s": ["a", "b"], "t": ["c"]})
    assert moves == [
        ("s", 0, {"a": "shared", "b": "shared", "c": "dw"}),
        ("s", 1, {"a": "dw", "b": "bn", "c": "dw"}),  # b offers no dw: its next weaker kind
        ("t", 0, {"a": "full", "b": "full", "c": "shared"}),
        ("t", 1, {"a": "full", "b": "full", "c": "bn"}),
    ]
    # A stage already at its weakest kind offers nothing; one a step above it, only sharing.
    assert descent_moves({"a": "bn", "c": "shared"}, choices, {"s": ["a"], "t": ["c"]}) == [
        ("s", 0, {"a": "shared", "c": "shared"})
    ]


STAGES = {"s0": GATES[:2], "s1": GATES[2:4], "s2": GATES[4:]}
#: Bytes per gate at each kind, the late stage's gates the largest (as in a backbone).
SIZES = {"shared": 0, "bn": 1, "dw": 3, "full": 10}


def _descent_values(params):
    """A toy (mAP, bytes): s0 needs `full`, s1 needs at least `dw`, s2 does not matter."""
    level = {g: KINDS.index(params[g]) for g in GATES}
    score = 0.8
    score -= 0.1 * sum(level[g] < 3 for g in STAGES["s0"])
    score -= 0.1 * sum(level[g] < 2 for g in STAGES["s1"])
    size = sum(SIZES[params[g]] * (1 + i) for i, g in enumerate(GATES))
    return score, float(size)


def _descending(groups, descent=0.01, cost=None):
    """A study whose sampler only descends (then neighbours), every other proposal random."""
    return _study(
        NeighbourSampler(
            optuna.samplers.RandomSampler(seed=0),
            seed=0,
            explore=0.0,
            groups=groups,
            descent=descent,
            cost=cost,
        )
    )


def test_descent_walks_down_from_the_accurate_end_to_what_each_stage_needs():
    cost = lambda p: _descent_values(p)[1]  # noqa: E731
    study = _descending(STAGES, 0.005, cost)
    study.enqueue_trial({g: "full" for g in GATES})
    proposals = []
    for _ in range(12):
        trial = study.ask({g: DIST for g in GATES})
        proposals.append(dict(trial.params))
        study.tell(trial, _descent_values(trial.params))
    best = {g: "full" for g in STAGES["s0"]} | {g: "dw" for g in STAGES["s1"]}
    best |= {g: "shared" for g in STAGES["s2"]}
    # Stages shared first, biggest saving first: the late stage (kept), the middle one and the
    # early one (both fall short); then a kind down: the middle one at dw (kept), the early
    # one at dw (short); then the middle one at bn (short). Six trials, then neighbours.
    late = {g: "shared" for g in STAGES["s2"]}
    assert proposals[1] == {g: "full" for g in GATES[:4]} | late
    assert proposals[4] == best
    kept = [p for p in proposals if _descent_values(p)[0] >= 0.8 - 0.005]
    assert min(kept, key=cost) == best
    # The descent proposed nothing weaker everywhere than a config that fell short.
    short = []
    for p in proposals[:7]:
        assert not any(all(KINDS.index(p[g]) <= KINDS.index(f[g]) for g in GATES) for f in short)
        if _descent_values(p)[0] < 0.8 - 0.005:
            short.append(p)


def test_the_descent_walks_a_stage_of_one_gate_too():
    # A detector's extra layers are a stage of one gate each, and among its largest.
    stages = {"s0": GATES[:3], "one": GATES[5:], "s1": GATES[3:5]}
    sizes = {g: 10.0 for g in GATES} | {"g5": 100.0}
    cost = lambda p: sum(sizes[g] * KINDS.index(p[g]) for g in GATES)  # noqa: E731
    study = _descending(stages, cost=cost)
    study.enqueue_trial({g: "full" for g in GATES})
    trial = study.ask({g: DIST for g in GATES})
    study.tell(trial, (0.8, cost(trial.params)))
    # The biggest saving is the one-gate stage, shared.
    assert study.ask({g: DIST for g in GATES}).params == {g: "full" for g in GATES[:5]} | {
        "g5": "shared"
    }


def test_descent_by_name_falls_back_to_neighbours_when_done():
    sampler = make_sampler("descent", 0, groups=STAGES, cost=lambda p: _descent_values(p)[1])
    study = _study(sampler)
    study.enqueue_trial({g: "full" for g in GATES})
    for _ in range(20):
        trial = study.ask({g: DIST for g in GATES})
        study.tell(trial, _descent_values(trial.params))
    assert len({tuple(sorted(t.params.items())) for t in study.trials}) == 20


def test_the_descent_keeps_the_largest_configs_score_not_the_luckiest_run():
    study = _descending(STAGES)
    full = {g: "full" for g in GATES}
    trials = ((full, 0.80), (full | {"g5": "dw"}, 0.795), (full | {"g0": "dw"}, 0.85))
    for params, value in trials:
        study.enqueue_trial(params)
        trial = study.ask({g: DIST for g in GATES})
        study.tell(trial, (value, _descent_values(trial.params)[1]))
    # Against the lucky 0.85 only that config would be kept; against the full config's 0.80
    # all three are, and the descent goes on from the smallest of them.
    proposal = study.ask({g: DIST for g in GATES}).params
    smallest = min((p for p, _ in trials), key=lambda p: _descent_values(p)[1])
    assert smallest == full | {"g5": "dw"}
    moves = descent_moves(smallest, {g: KINDS for g in GATES}, STAGES)
    assert proposal in [new for _, _, new in moves], (proposal, smallest)


def test_the_descent_reads_a_config_run_twice_at_the_mean_of_its_runs():
    study = _descending(STAGES)
    full = {g: "full" for g in GATES}
    small = full | {g: "shared" for g in STAGES["s2"]}
    # The full config twice (mean 0.80); the small one lucky once (0.80) then not (0.76): its
    # mean 0.78 falls short of the mark 0.79, so the descent does not go on from it.
    for params, value in ((full, 0.79), (full, 0.81), (small, 0.80), (small, 0.76)):
        study.enqueue_trial(params)
        trial = study.ask({g: DIST for g in GATES})
        study.tell(trial, (value, _descent_values(trial.params)[1]))
    proposal = study.ask({g: DIST for g in GATES}).params
    from_full = [new for _, _, new in descent_moves(full, {g: KINDS for g in GATES}, STAGES)]
    assert proposal in from_full and proposal != small
    # Nothing weaker everywhere than the small config is proposed: it fell short.
    assert not all(KINDS.index(proposal[g]) <= KINDS.index(small[g]) for g in GATES)


def test_the_descents_tolerance_is_the_samplers():
    # The tolerance is given in mAP points, as the study file has it; the descent keeps half.
    assert make_sampler("descent", 0, groups=STAGES)._descent == 0.005
    assert make_sampler("descent", 0, groups=STAGES, tolerance=0.4)._descent == 0.002
    assert make_sampler("neighbours", 0, groups=STAGES, tolerance=0.4)._descent is None
