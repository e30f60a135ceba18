"""The warm start on a real (small) task: distinct configs, per-gate probabilities."""

from __future__ import annotations

import optuna
import pytest

from spotpatch.evaluators import TrainSettings
from spotpatch.search import relax, relaxation_record, write_relaxation
from spotpatch.studies import evaluator_of, load_spec


@pytest.fixture(scope="module")
def result(bench):
    evaluator = evaluator_of(load_spec(bench / "studies" / "glyphs.toml"), progress=False)
    settings = TrainSettings(steps=24, batch_size=8)
    out = relax(
        evaluator.base,
        evaluator.task,
        evaluator.space,
        settings,
        lambdas=(0.0, 50.0),
        seed=0,
        progress=False,
    )
    return evaluator.space, out


def test_one_phase_per_penalty_and_probabilities_sum_to_one(result):
    space, out = result
    assert [p.lam for p in out.phases] == [0.0, 50.0] and out.steps == 24 and out.seconds > 0
    for phase in out.phases:
        assert list(phase.probabilities) == list(space.groups())
        for label, probs in phase.probabilities.items():
            assert list(probs) == list(space.choices(label))
            assert sum(probs.values()) == pytest.approx(1.0, abs=1e-6)
        space.check_contains(phase.config)
        assert phase.patch_bytes == space.patch_bytes(phase.config)


def test_a_heavy_penalty_gives_a_smaller_patch(result):
    space, out = result
    free, heavy = out.phases
    assert heavy.patch_bytes < free.patch_bytes


def test_distinct_configs(result):
    _, out = result
    configs = out.distinct_configs()
    assert len(configs) == len(set(configs)) >= 1
    # As a study stores it and reads it back.
    study = optuna.create_study(directions=["maximize", "minimize"])
    write_relaxation(study, out)
    stored = relaxation_record(study)
    assert [p.sites for p in stored.phases] == [p.config.to_dict() for p in out.phases]
    assert [p.lam for p in stored.phases] == [p.lam for p in out.phases]
    assert stored.steps == out.steps and stored.seconds == pytest.approx(out.seconds, abs=0.01)


@pytest.mark.parametrize(
    "options, steps",
    [
        ({"hard": False}, 8),  # soft draws: every kind trains at every step
        ({"warmup": 0.5}, 12),  # a warm-up adds steps before the first phase
    ],
)
def test_relaxation_options_read_off_a_config_per_phase(bench, options, steps):
    evaluator = evaluator_of(load_spec(bench / "studies" / "glyphs.toml"), progress=False)
    out = relax(
        evaluator.base,
        evaluator.task,
        evaluator.space,
        TrainSettings(steps=8, batch_size=8),
        lambdas=(0.0, 50.0),
        seed=0,
        progress=False,
        **options,
    )
    assert out.steps == steps and [p.lam for p in out.phases] == [0.0, 50.0]
    for phase in out.phases:
        evaluator.space.check_contains(phase.config)
