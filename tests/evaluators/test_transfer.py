"""Transfer facts the search relies on, at the suite's scale (quarter-size tasks, 30 steps).

Margins come from runs of exactly this setup over seeds 0-2 (``benchmarks/transfer.py``, mAP on
val): glyphs (far): head 0.08-0.12, full 0.28-0.36 (full ahead by 0.20-0.25); shapes-subset
(near), preset full: shipped base 0.58-0.61, random-init base 0.000-0.001.
"""

from __future__ import annotations

import pytest

from spotpatch.evaluators import PatchEvaluator, TrainSettings, load_base
from spotpatch.studies import evaluator_of, load_spec

SETTINGS = TrainSettings(steps=30, batch_size=16, lr=3e-3)


@pytest.fixture(scope="module")
def pretrained():
    return load_base("spotpatch-tiny", device="cpu")


def _evaluator(bench, name, base):
    task = evaluator_of(load_spec(bench / "studies" / f"{name}.toml"), progress=False).task
    return PatchEvaluator(task, base, SETTINGS, progress=False)


def test_full_beats_head_on_a_far_task(bench, pretrained):
    evaluator = _evaluator(bench, "glyphs", pretrained)
    head = evaluator.evaluate(evaluator.space.preset("head"), seed=0)
    full = evaluator.evaluate(evaluator.space.preset("full"), seed=0)
    assert full.map > head.map + 0.15, (head.map, full.map)
    assert full.patch_bytes > 5 * head.patch_bytes


def test_the_pretrained_base_beats_a_random_one_on_a_near_task(bench, pretrained, random_base):
    scores = {}
    for name, base in (("pretrained", pretrained), ("random", random_base)):
        evaluator = _evaluator(bench, "shapes-subset", base)
        config = evaluator.space.preset("full")
        scores[name] = evaluator.evaluate(config, seed=0).map
    assert scores["pretrained"] > scores["random"] + 0.3, scores
    assert scores["pretrained"] > 0.5, scores
