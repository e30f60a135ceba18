"""The prefix cache: cached trials train and score as uncached ones, within the memory cap."""

from __future__ import annotations

import logging

import pytest
import torch
from torchvision.models.detection.ssd import SSD

from spotpatch import UserError
from spotpatch.evaluators import (
    CocoSplit,
    PatchEvaluator,
    TrainSettings,
    clear_prefix_caches,
    load_base,
    prefix_cache_bytes,
)
from spotpatch.evaluators._coco import sample
from spotpatch.evaluators._prefix import (
    CacheRequest,
    cut_point,
    cut_points,
    parse_cache_size,
    prefix_caches,
)
from spotpatch.spaces import PatchConfig
from spotpatch.studies import evaluator_of, load_spec


@pytest.fixture(scope="module")
def glyphs(bench, random_base):
    return evaluator_of(
        load_spec(bench / "studies" / "glyphs.toml"), base=random_base, progress=False
    )


def _configs(space) -> dict[str, PatchConfig]:
    """Head only; from the middle of the backbone (feature maps for the heads cached too);
    from its first stage (no feature map cached yet)."""
    configs = {"head": space.preset("head")}
    for name, block in (("mid", "backbone.features.1.3."), ("early", "backbone.features.0.2.")):
        sites = {s.name: "full" for s in space.sites if s.name.startswith(block)}
        configs[name] = PatchConfig.from_dict(sites)
    return configs


def _trial(glyphs, config, monkeypatch, **settings):
    """A 4-step trial's result and its training losses, step by step."""
    losses: list[dict[str, float]] = []
    compute_loss = SSD.compute_loss

    def recorded(self, *args):
        out = compute_loss(self, *args)
        losses.append({k: v.item() for k, v in out.items()})
        return out

    evaluator = PatchEvaluator(
        glyphs.task,
        glyphs.base,
        TrainSettings(steps=4, batch_size=4, **settings),
        progress=False,
    )
    with monkeypatch.context() as m:
        m.setattr(SSD, "compute_loss", recorded)
        result = evaluator.evaluate(config, seed=3)
    return result, losses


def test_cut_points_follow_the_first_patched_tensor(glyphs):
    model, space = glyphs.base.model, glyphs.space
    names = cut_points(model)
    assert names[-1] == "backbone outputs" and "backbone.features.1.3" in names
    configs = _configs(space)
    assert names[cut_point(model, list(space.patch_tensors(configs["head"]))) - 1] == names[-1]
    mid = cut_point(model, list(space.patch_tensors(configs["mid"])))
    assert names[mid - 1] == "backbone.features.1.3"
    early = cut_point(model, list(space.patch_tensors(configs["early"])))
    assert names[early - 1] == "backbone.features.0.2"
    assert names[cut_point(model, list(space.patch_tensors(space.preset("tail")))) - 1] == (
        "backbone.extra.0"
    )
    # A config that patches the stem starts at the input: nothing to cache.
    assert cut_point(model, list(space.patch_tensors(space.preset("bn")))) is None


@pytest.mark.parametrize(
    "name, hflip",
    [("head", False), ("head", True), ("mid", False), ("mid", True), ("early", True)],
)
def test_a_cached_trial_trains_and_scores_as_an_uncached_one(glyphs, monkeypatch, name, hflip):
    config = _configs(glyphs.space)[name]
    clear_prefix_caches()
    uncached, plain = _trial(glyphs, config, monkeypatch, hflip=hflip, prefix_cache="off")
    assert prefix_cache_bytes() == 0
    cached, fast = _trial(glyphs, config, monkeypatch, hflip=hflip)
    assert prefix_cache_bytes() > 0
    assert len(plain) == len(fast) == 4
    for a, b in zip(plain, fast, strict=True):
        assert a == pytest.approx(b, rel=1e-5, abs=1e-6)
    for tensor, value in uncached.tensors.items():
        torch.testing.assert_close(cached.tensors[tensor], value, rtol=1e-4, atol=1e-6)
    assert (cached.map, cached.map50) == (uncached.map, uncached.map50)
    # Building counts in the trial that builds; a later trial reuses the cache.
    held = prefix_cache_bytes()
    again, losses = _trial(glyphs, config, monkeypatch, hflip=hflip)
    assert prefix_cache_bytes() == held
    assert losses == fast and again.map == cached.map


def test_the_cap_is_honoured_and_a_cut_over_it_says_so(glyphs, monkeypatch, caplog):
    configs = _configs(glyphs.space)
    clear_prefix_caches()
    _trial(glyphs, configs["head"], monkeypatch)
    head_bytes = prefix_cache_bytes()
    clear_prefix_caches()
    cap = str(head_bytes)  # the head's caches fit exactly; nothing more does
    with caplog.at_level(logging.INFO, logger="spotpatch"):
        _trial(glyphs, configs["head"], monkeypatch, prefix_cache=cap)
        assert prefix_cache_bytes() == head_bytes
        over = [r for r in caplog.records if "over the cap" in r.getMessage()]
        assert not over
        plain, plain_losses = _trial(glyphs, configs["mid"], monkeypatch, prefix_cache="off")
        result, losses = _trial(glyphs, configs["mid"], monkeypatch, prefix_cache=cap)
        result2, _ = _trial(glyphs, configs["mid"], monkeypatch, prefix_cache=cap)
    over = [r.getMessage() for r in caplog.records if "over the cap" in r.getMessage()]
    assert len(over) == 1, over  # said once, not at every trial
    assert "backbone.features.1.3" in over[0] and "computed as before" in over[0]
    assert prefix_cache_bytes() == head_bytes <= parse_cache_size(cap)
    # Computed as today: the same losses and scores as with the cache off.
    assert losses == plain_losses and result.map == plain.map == result2.map

    caplog.clear()
    clear_prefix_caches()
    with caplog.at_level(logging.WARNING, logger="spotpatch"):
        _trial(glyphs, configs["head"], monkeypatch, prefix_cache="1KiB")
    assert prefix_cache_bytes() == 0
    assert ["over the cap" in r.getMessage() for r in caplog.records] == [True]


def test_cache_sizes_parse_or_are_refused():
    assert parse_cache_size("2GiB") == 2 * 1024**3
    assert parse_cache_size("1.5MB") == 1_500_000
    assert parse_cache_size("off") == 0 and parse_cache_size("auto") is None
    with pytest.raises(UserError, match="prefix_cache must be auto, off or a size"):
        TrainSettings(prefix_cache="lots")


@pytest.mark.parametrize("family", ["spotpatch-tiny", "torchvision:ssdlite320_mobilenet_v3_large"])
def test_cached_losses_and_detections_are_the_models_own(family):
    """Every SSD family that declares ``cached_prefix``, at its own input size: a batch's
    losses (flipped images among them) and detections from the cache are the model's own."""
    base = load_base(family, random_init=True, device="cpu")
    space = base.space(3)
    h, w = base.detector.image_size
    g = torch.Generator().manual_seed(0)
    boxes = [
        torch.tensor([[4.0, 6.0, w / 2, h / 3]]),
        torch.zeros(0, 4),
        torch.tensor([[1.0, 2, 9, 9]]),
    ]
    split = CocoSplit(
        annotations=None,
        images_dir=None,
        coco=None,
        image_ids=(1, 2, 3),
        file_names=("a", "b", "c"),
        sizes=((w, h),) * 3,
        images=tuple(
            torch.randint(0, 256, (3, h, w), generator=g, dtype=torch.uint8) for _ in boxes
        ),
        boxes=tuple(boxes),
        labels=tuple(torch.ones(len(b), dtype=torch.int64) for b in boxes),
    )
    for config in (space.preset("head"), space.preset("tail")):
        applied = base.apply(config, space, seed=0)
        model = applied.model
        cut = cut_point(model, list(applied.expected))
        request = CacheRequest(split, "synthetic", flips=True, train=True)
        (cache,) = prefix_caches(model, cut, [request], base=(base.name, "x"), cap="1GB")
        idx, flips = [2, 0, 1, 0], [True, False, False, True]
        pairs = [sample(split, i, "cpu", f) for i, f in zip(idx, flips, strict=True)]
        model.train()
        expected = model([p[0] for p in pairs], [p[1] for p in pairs])
        got = cache.losses(model, idx, flips)
        for k in expected:
            torch.testing.assert_close(got[k], expected[k])
        model.eval()
        with torch.no_grad():
            expected = model([p[0] for p, f in zip(pairs, flips, strict=True) if not f])
            got = cache.detect(model, [0, 1])
        for a, b in zip(got, expected, strict=True):
            for k in a:
                torch.testing.assert_close(a[k], b[k])
    clear_prefix_caches()
