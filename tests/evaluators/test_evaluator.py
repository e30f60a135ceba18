"""The evaluator on the shipped base and the generated benchmark, with small step budgets."""

from __future__ import annotations

import pytest
import torch

from spotpatch import UserError
from spotpatch.evaluators import PatchEvaluator, TrainSettings, load_base
from spotpatch.spaces import load_patch, payload_bytes, save_patch
from spotpatch.studies import evaluator_of, load_spec
from spotpatch.testing import pycocotools_map


@pytest.fixture(scope="module")
def base():
    return load_base("spotpatch-tiny", device="cpu")


@pytest.fixture(scope="module")
def glyphs(bench, base):
    return evaluator_of(load_spec(bench / "studies" / "glyphs.toml"), base=base, progress=False)


def test_the_shipped_base_loads_offline(base):
    assert base.classes is not None and len(base.classes) >= 8
    assert base.num_classes == len(base.classes) + 1
    assert not any(p.requires_grad for p in base.model.parameters())


def test_training_leaves_every_shared_tensor_bit_identical(glyphs, base):
    before = {k: v.clone() for k, v in base.model.state_dict().items()}
    evaluator = PatchEvaluator(
        glyphs.task, base, TrainSettings(steps=8, batch_size=8), progress=False
    )
    result = evaluator.evaluate(evaluator.space.preset("dw"))
    after = base.model.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)
    assert result.patch_bytes == evaluator.space.patch_bytes(evaluator.space.preset("dw"))


@pytest.mark.parametrize("dtype", ["float32", "float16"])
def test_a_saved_patch_reproduces_the_trial_map_exactly(glyphs, tmp_path, dtype):
    evaluator = PatchEvaluator(
        glyphs.task,
        glyphs.base,
        TrainSettings(steps=30, batch_size=8),
        dtype=dtype,
        progress=False,
    )
    result = evaluator.evaluate(evaluator.space.preset("lora4"))
    assert result.map > 0
    save_patch(evaluator.to_patch(result, name="glyphs", trial=0), tmp_path / "p")
    assert payload_bytes(tmp_path / "p" / "patch.safetensors") == result.patch_bytes
    fresh = load_base("spotpatch-tiny", device="cpu")  # a base loaded anew, as a user would
    again = PatchEvaluator(glyphs.task, fresh, evaluator.settings, dtype=dtype, progress=False)
    value, value50 = again.score(load_patch(tmp_path / "p"))
    assert (value, value50) == (result.map, result.map50)


def test_intermediate_scores_reach_the_callback(glyphs):
    seen = []
    evaluator = PatchEvaluator(
        glyphs.task, glyphs.base, TrainSettings(steps=10, batch_size=8), progress=False
    )
    result = evaluator.evaluate(
        evaluator.space.preset("bn"),
        fractions=(0.3, 0.6),
        callback=lambda step, fraction, value: seen.append((step, fraction, value)),
    )
    assert [s for s, _, _ in seen] == [3, 6]
    assert [f for _, f, _ in seen] == [0.3, 0.6]
    assert [v for _, v in result.intermediate] == [v for _, _, v in seen]


def test_the_test_split_is_scored_for_stored_patches(glyphs):
    evaluator = PatchEvaluator(
        glyphs.task, glyphs.base, TrainSettings(steps=5, batch_size=8), progress=False
    )
    result = evaluator.evaluate(evaluator.space.preset("head"))
    patch = evaluator.to_patch(result)
    value, _ = evaluator.score(patch, split="test")
    # pycocotools itself, on the same detections of the test split.
    model = glyphs.base.apply_stored(patch, evaluator.space).model
    assert value == pycocotools_map(model, glyphs.task.test, glyphs.task.category_ids)


def test_norms_and_low_rank_factors_train_at_their_own_rates(glyphs):
    settings = TrainSettings(lr=0.01, norm_lr_scale=10, lora_lr_scale=3)
    assert [settings.lr_of(r) for r in ("weight", "norm", "lora")] == pytest.approx(
        [0.01, 0.1, 0.03]
    )
    space = glyphs.space
    applied = glyphs.base.apply(space.preset("lora4"), space)
    groups = settings.param_groups(applied.parameters_by_role())
    by_lr = {g["lr"]: len(g["params"]) for g in groups}
    assert sorted(by_lr) == pytest.approx([0.01, 0.03, 0.1]) and all(by_lr.values())
    with pytest.raises(UserError, match="norm_lr_scale"):
        TrainSettings(norm_lr_scale=0)
