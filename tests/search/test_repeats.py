"""Configs run again with other seeds: which ones (:func:`next_repeat`), how a study reads them
(the mean of their runs) and the controller running them."""

from __future__ import annotations

import optuna
import pytest
import torch

from spotpatch.evaluators import EvalResult
from spotpatch.search import (
    StudyController,
    front_points,
    full_point,
    make_sampler,
    next_repeat,
    pareto_front,
    run_job,
    run_trials,
    select_point,
)
from spotpatch.studies import artifact_store, open_storage
from spotpatch.testing import record

S = optuna.trial.TrialState


def test_a_config_run_twice_is_one_point_at_its_mean():
    records = [
        record(0, "full", 0.80, 100, preset="full"),
        record(1, "a", 0.70, 30),
        record(2, "full", 0.84, 100, preset="full"),
        record(3, "a", 0.70, 30, duplicate_of=1),  # the same run: not a second one
        record(4, "b", None, 50, state=S.FAIL),
    ]
    points = front_points(records)
    assert [(p.number, p.runs) for p in points] == [(0, 2), (1, 1)]
    assert points[0].map == pytest.approx(0.82) and points[0].bytes == 100
    # A duplicate stands for its config where the records hold no run of it.
    assert [(p.number, p.map) for p in front_points(records[3:])] == [(3, 0.70)]


def test_the_head_alone_run_twice_is_one_point_too():
    # The head-only preset patches no site: its config is empty, and still one config.
    head = [record(n, {}, m, 10, preset="head") for n, m in ((0, 0.50), (5, 0.54))]
    points = front_points([*head, record(1, "a", 0.70, 30)])
    assert [(p.number, p.runs) for p in points] == [(0, 2), (1, 1)]
    assert points[0].map == pytest.approx(0.52)


def test_the_full_fine_tune_runs_again_first_then_the_pick():
    full = record(0, "full", 0.80, 100, preset="full")
    small, mid = record(1, "small", 0.795, 20), record(2, "mid", 0.81, 50)
    assert next_repeat([full, small, mid], 1) is None  # repeats off
    assert next_repeat([small, mid], 2) is None  # no mark without the full fine-tune
    assert next_repeat([full, small, mid], 2).number == 0
    # Its second run in flight counts: the pick (the smallest within a point of it) is next.
    running = record(3, "full", None, 100, preset="full", state=S.RUNNING)
    assert next_repeat([full, small, mid, running], 2).number == 1
    again = record(3, "full", 0.80, 100, preset="full")
    assert next_repeat([full, small, mid, again], 2).number == 1
    assert next_repeat([full, small, mid, again], 3).number == 0
    # A tighter tolerance: small (0.795) is no longer within 0.4 points of 0.80; mid is.
    assert next_repeat([full, small, mid, again], 2, tolerance=0.4).number == 2
    # The pick's second run pulls its mean (0.775) below the mark (0.79): the next smallest
    # within a point is the pick now, and it has one run.
    unlucky = record(4, "small", 0.755, 20)
    assert next_repeat([full, small, mid, again, unlucky], 2).number == 2
    lucky = record(4, "small", 0.80, 20)
    assert next_repeat([full, small, mid, again, lucky], 2) is None  # decided
    # A config whose repeat failed for good is not asked again (past the total, it would be
    # forever); one whose failure is being retried is.
    failed = record(4, "small", None, 20, state=S.FAIL)
    assert next_repeat([full, small, mid, again, failed], 2) is None
    failed = record(4, "small", None, 20, state=S.FAIL, retried=True)
    assert next_repeat([full, small, mid, again, failed], 2).number == 1
    # The same for the head alone (an empty config) as the pick.
    head = record(1, {}, 0.80, 10, preset="head")
    head_failed = record(4, {}, None, 10, state=S.FAIL)
    assert next_repeat([full, head, again], 2).number == 1
    assert next_repeat([full, head, again, head_failed], 2) is None


class NoisyEvaluator:
    """Scores a config by its bytes (a quarter of the full detector's reaches the full score)
    plus a seed's noise; records every (config, seed)."""

    def __init__(self, space):
        self.space = space
        self.calls: list[tuple[dict, int]] = []

    def evaluate(self, config, *, callback=None, fractions=(), seed=0):
        self.calls.append((config.to_dict(), seed))
        size = self.space.patch_bytes(config)
        value = 0.5 * min(1.0, 4 * size / self.space.full_bytes()) + 0.004 * (seed % 3)
        return EvalResult(value, value, size, 0.1, 0.1, config, {"x": torch.zeros(3)}, ())


def _controller(tmp_path, space, sampler, **options):
    """A controller of a new study with ``repeats = 2`` and the full fine-tune queued."""
    storage = open_storage(f"sqlite:///{tmp_path}/s.db")
    optuna.create_study(study_name="t", storage=storage, directions=["maximize", "minimize"])
    controller = StudyController(
        storage,
        "t",
        space,
        sampler=sampler,
        artifact_store=artifact_store(tmp_path / "art"),
        repeats=2,
        **options,
    )
    with controller.exclusive():
        controller.enqueue([space.preset("full")], source="preset")
    return controller


def test_a_study_with_repeats_runs_the_full_fine_tune_and_its_pick_twice(tmp_path, random_base):
    space = random_base.space(3, granularity="stage")
    sampler = make_sampler("descent", 0, groups=space.stage_gates(), cost=space.gates_bytes)
    controller = _controller(tmp_path, space, sampler)
    evaluator = NoisyEvaluator(space)
    state = run_trials(controller, evaluator, 11, seed=7)
    records = controller.records()
    # Repeats count toward the total; past it, only the repeats of a pick the last trials found.
    assert state.done == len(evaluator.calls) == len(records) >= 11
    assert all(r.source == "repeat" for r in records[11:])
    assert len(records) == 12  # here the 11th trial found a new pick: its repeat follows
    # The repeat past the total raises the total: a progress line never reads 12/11.
    assert (state.done, state.total) == (12, 12) and controller.progress(11).total == 12
    repeats = [r for r in records if r.source == "repeat"]
    by_number = {r.number: r for r in records}
    full = by_number[0]
    assert full.preset == "full" and any(r.repeat_of == 0 for r in repeats)
    for r in repeats:  # the same config, its own seed
        assert r.sites == by_number[r.repeat_of].sites and r.complete
    seeds = [seed for sites, seed in evaluator.calls if sites == full.sites]
    assert len(seeds) == 2 and len(set(seeds)) == 2
    # Nothing ran more than twice; besides the full fine-tune, picks ran twice, the last one
    # too: the study does not end on one run of its pick.
    runs = [tuple(sorted(r.sites.items())) for r in records if r.complete]
    assert max(runs.count(k) for k in runs) == 2
    assert any(r.repeat_of != 0 for r in repeats)
    points = front_points(records)
    pick = select_point(
        pareto_front(points),
        "within-full=1",
        space.full_bytes(),
        full_map=full_point(records).map,
    )
    assert pick.bytes < full.patch_bytes
    assert pick.runs == 2
    assert run_trials(controller, evaluator, 11, seed=7).done == state.done  # resumed: done


def test_a_repeat_runs_to_the_end_even_with_early_stopping(tmp_path, random_base):
    from spotpatch.search import EarlyStopping

    space = random_base.space(3, granularity="stage")
    early = EarlyStopping(checkpoints=(0.5,))
    controller = _controller(tmp_path, space, make_sampler("random", 0), early_stopping=early)
    trial = controller.ask(3)  # the full fine-tune
    controller.tell(trial, run_job(controller.job(trial, seed=0), NoisyEvaluator(space)))
    trial = controller.ask(3)  # its second run
    job = controller.job(trial, seed=0)
    assert trial.user_attrs["repeat_of"] == 0 and job.fractions == ()
    controller.tell_interrupted(trial)
    trial = controller.ask(3)  # its retry: a retry may stop early
    assert controller.job(trial, seed=0).fractions == (0.5,)


def test_a_repeat_that_fails_past_the_total_is_retried_not_left_queued(tmp_path, random_base):
    space = random_base.space(3, granularity="stage")
    sampler = make_sampler("descent", 0, groups=space.stage_gates(), cost=space.gates_bytes)
    controller = _controller(tmp_path, space, sampler)

    class FailsOnce(NoisyEvaluator):
        def evaluate(self, config, **kw):
            if len(self.calls) == 11:  # the 12th run: the repeat past the total
                self.calls.append((config.to_dict(), kw.get("seed")))
                raise RuntimeError("out of memory")
            return super().evaluate(config, **kw)

    evaluator = FailsOnce(space)
    run_trials(controller, evaluator, 11, seed=7)
    records = controller.records()
    failed = [r for r in records if r.state == S.FAIL]
    assert len(failed) == 1 and failed[0].source == "repeat" and failed[0].retried
    retry = next(r for r in records if r.retry_of == failed[0].number)
    assert retry.complete and retry.sites == failed[0].sites
    assert not [r for r in records if r.state == S.WAITING]
    # The retry is the repeat: the config has its two runs, not three.
    runs = [tuple(sorted(r.sites.items())) for r in records if r.complete]
    assert runs.count(tuple(sorted(retry.sites.items()))) == 2
