from __future__ import annotations

import math

import pytest

from spotpatch import UserError
from spotpatch.spaces import PRESETS, PatchConfig, PatchKind, PatchSpace, parse_kind


@pytest.fixture(scope="module")
def space(random_base):
    return random_base.space(5, kinds=("bn", "dw", "lora4", "full"), granularity="site")


def test_parse_kind():
    assert parse_kind("lora8") == PatchKind("lora", 8)
    assert [str(parse_kind(k)) for k in ("shared", "bn", "dw", "full")] == [
        "shared",
        "bn",
        "dw",
        "full",
    ]
    for bad in ("lora", "lora0", "lora999", "fulll", "", 3):
        with pytest.raises(UserError):
            parse_kind(bad)


def test_presets_grow_in_bytes(space):
    sizes = [space.patch_bytes(space.preset(p)) for p in PRESETS]
    assert sizes == sorted(sizes) and len(set(sizes)) == len(sizes)
    assert sizes[0] == space.head_bytes() > 0
    with pytest.raises(UserError, match="unknown preset"):
        space.preset("half")


def test_full_preset_covers_every_tensor(space, random_base):
    """The full patch stores every tensor of the model but num_batches_tracked."""
    tensors = space.patch_tensors(space.preset("full"))
    skeleton = random_base.detector.build(5)
    expected = {
        n: tuple(t.shape)
        for n, t in skeleton.state_dict().items()
        if not n.endswith("num_batches_tracked")
    }
    assert tensors == expected


def test_bytes_are_shape_exact(space):
    config = space.preset("lora4")
    expected = sum(math.prod(s) for s in space.patch_tensors(config).values()) * 4
    assert space.patch_bytes(config) == expected
    half = space.with_options(dtype="float16")
    assert half.patch_bytes(config) * 2 == expected


def test_allowed_kinds_follow_the_site(space):
    dw_site = next(s for s in space.sites if s.depthwise)
    no_norm = next(s for s in space.sites if s.norm is None)
    assert "dw" in [str(k) for k in space.allowed(dw_site)]
    assert "lora4" not in [str(k) for k in space.allowed(dw_site)]
    assert "bn" not in [str(k) for k in space.allowed(no_norm)]
    # A gate asking for lora on a depthwise site gets the depthwise weight instead.
    assert str(space.resolve(dw_site, "lora4")) == "dw"
    assert str(space.resolve(no_norm, "bn")) == "shared"
    with pytest.raises(UserError, match="does not allow"):
        space.check_contains(PatchConfig({no_norm.name: "bn"}))
    with pytest.raises(UserError, match="unknown site"):
        space.check_contains(PatchConfig({"no.such.layer": "full"}))


def test_kinds_no_site_allows_are_refused(random_base):
    space = random_base.space(3, kinds=("bn",))
    sites = tuple(s for s in space.sites if not s.depthwise)
    with pytest.raises(UserError, match="no site .* allows kind 'dw'"):
        PatchSpace("m", sites, space.head, kinds=("dw",))


@pytest.mark.parametrize("granularity", ["block", "stage"])
def test_gates_freeze_into_configs(random_base, granularity):
    space = random_base.space(4, granularity=granularity)
    groups = space.groups()
    assert sum(len(v) for v in groups.values()) == len(space.sites)
    assert len(groups) < len(space.sites)
    label = next(iter(groups))
    gates = {label: space.choices(label)[-1]}
    config = space.config_from_gates(gates)
    assert set(config.kinds) <= set(groups[label])
    assert space.gates_of(config)[label] == gates[label]
    assert space.config_from_gates({}) == PatchConfig()
    with pytest.raises(UserError, match="unknown gate"):
        space.config_from_gates({"nope": "full"})


def test_config_summary_and_roundtrip():
    config = PatchConfig.from_dict({"a": "full", "b": "bn", "c": "bn", "d": "shared"})
    assert config.summary() == "full x1, bn x2"
    assert PatchConfig.from_dict(config.to_dict()) == config
    assert "d" not in config.to_dict()
    assert PatchConfig().summary() == "head only"


def test_stage_gates_group_the_gates_of_each_stage(random_base):
    space = random_base.space(3, granularity="block")
    stages = space.stage_gates()
    assert [g for gates in stages.values() for g in gates] == list(space.groups())
    for stage, gates in stages.items():
        assert all(space.site(space.groups()[g][0]).stage == stage for g in gates)
    assert len(random_base.space(3, granularity="stage").stage_gates()) == len(stages)
