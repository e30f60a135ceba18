from __future__ import annotations

import math

import pytest
import torch

from spotpatch import UserError
from spotpatch.spaces import (
    DTYPES,
    SCALE_SUFFIX,
    dequantize_int8,
    quantize_int8,
    stored_layout,
)


def _weights():
    g = torch.Generator().manual_seed(0)
    conv = torch.randn(16, 8, 3, 3, generator=g) * 0.1
    conv[3] = 0.0  # an all-zero channel (a LoRA B at its start is all zeros)
    wide = torch.randn(5, 300, generator=g) * torch.logspace(-6, 2, 5).unsqueeze(1)
    return {"conv": conv, "wide": wide, "row": torch.randn(1, 7, generator=g)}


@pytest.mark.parametrize("name", ["conv", "wide", "row"])
def test_int8_round_trip_is_within_half_a_scale(name):
    """Every value comes back within half its channel's scale, whatever the channel's range
    (from 1e-6 to 100 here: float16 scales that are subnormal too)."""
    weight = _weights()[name]
    values, scales = quantize_int8(weight)
    assert values.dtype == torch.int8 and values.shape == weight.shape
    assert scales.dtype == torch.float16 and scales.shape == (weight.shape[0],)
    assert int(values.abs().max()) <= 127
    back = dequantize_int8(values, scales)
    assert back.dtype == torch.float32 and back.shape == weight.shape
    bound = scales.float().reshape(-1, *[1] * (weight.dim() - 1)) / 2
    error = (back - weight).abs()
    assert bool((error <= bound * (1 + 1e-6)).all())
    # Each channel's scale maps its largest |w| (the scale is at least max|w| / 127, no more
    # than one float16 step above it).
    peak = weight.reshape(weight.shape[0], -1).abs().amax(dim=1)
    assert bool((scales.float() >= peak / 127).all())
    assert bool((scales.float() <= (peak / 127) * (1 + 2**-9) + 2**-24).all())


def test_an_all_zero_channel_is_stored_exactly():
    weight = _weights()["conv"]
    values, scales = quantize_int8(weight)
    assert float(scales[3]) == 0.0 and not bool(values[3].any())
    back = dequantize_int8(values, scales)
    assert bool(torch.isfinite(back).all()) and not bool(back[3].any())
    values, scales = quantize_int8(torch.zeros(4, 2))
    assert not bool(scales.any()) and not bool(dequantize_int8(values, scales).any())


def test_quantizing_again_changes_nothing():
    """A stored int8 patch loaded and stored again is the same file."""
    weight = _weights()["conv"]
    values, scales = quantize_int8(weight)
    again = quantize_int8(dequantize_int8(values, scales))
    assert torch.equal(again[0], values) and torch.equal(again[1], scales)


def test_layouts_per_dtype():
    shapes = {"c.weight": (8, 4, 3, 3), "c.bias": (8,), "l.lora_A": (4, 36), "n.weight": (8,)}
    assert DTYPES == ("float32", "float16", "int8")
    for dtype in ("float32", "float16"):
        assert stored_layout(shapes, dtype) == {n: (s, dtype) for n, s in shapes.items()}
    assert stored_layout(shapes, "int8") == {
        "c.weight": ((8, 4, 3, 3), "int8"),
        f"c.weight{SCALE_SUFFIX}": ((8,), "float16"),
        "c.bias": ((8,), "float16"),
        "l.lora_A": ((4, 36), "int8"),
        f"l.lora_A{SCALE_SUFFIX}": ((4,), "float16"),
        "n.weight": ((8,), "float16"),
    }


def test_a_scale_name_that_is_a_tensor_name_is_refused():
    with pytest.raises(UserError, match="has the name of the scales"):
        stored_layout({"c.weight": (8, 4), f"c.weight{SCALE_SUFFIX}": (8,)}, "int8")


def test_an_unknown_dtype_is_one_line(random_base):
    for bad in ("int4", "bfloat16", ""):
        with pytest.raises(UserError) as info:
            random_base.space(3, dtype=bad)
        assert f"unknown patch dtype {bad!r}" in str(info.value)
        assert "int8" in str(info.value) and "\n" not in str(info.value)


@pytest.fixture(scope="module")
def int8_space(random_base):
    return random_base.space(4, dtype="int8")


def test_int8_bytes_are_the_layout(int8_space):
    """Bytes per site and of the head add up to the patch's; weights take 1 byte an element
    plus 2 per output channel, everything else 2 bytes an element."""
    config = int8_space.preset("full")
    tensors = int8_space.patch_tensors(config)
    expected = sum(
        math.prod(s) + 2 * s[0] if len(s) >= 2 else 2 * math.prod(s) for s in tensors.values()
    )
    assert int8_space.patch_bytes(config) == expected
    parts = int8_space.head_bytes() + sum(
        int8_space.site_bytes(int8_space.site(n), k) for n, k in config.kinds.items()
    )
    assert parts == expected
    half = int8_space.with_options(dtype="float16").patch_bytes(config)
    assert 0.5 * half < expected < 0.6 * half


def test_state_is_stored_int8_and_load_dequantizes(random_base, int8_space):
    """What a trial is scored with: the model holds the dequantized int8 patch after
    ``load(state())``, within half a scale of what trained."""
    config = int8_space.preset("lora4")
    applied = random_base.apply(config, int8_space, seed=2)
    with torch.no_grad():
        for p in applied.parameters():
            p.add_(torch.randn(p.shape, generator=torch.Generator().manual_seed(1)) * 0.01)
    trained = {n: t.clone() for n, t in applied.model.state_dict().items()}
    stored = applied.state()
    layout = stored_layout(int8_space.patch_tensors(config), "int8")
    assert list(stored) == list(layout)
    assert {n: (tuple(t.shape), str(t.dtype)) for n, t in stored.items()} == {
        n: (s, f"torch.{d}") for n, (s, d) in layout.items()
    }
    assert sum(t.numel() * t.element_size() for t in stored.values()) == (
        int8_space.patch_bytes(config)
    )
    applied.load(stored)
    model = applied.model.state_dict()
    for name, value in ((n, model[n]) for n in int8_space.patch_tensors(config)):
        if stored[name].dtype == torch.int8:
            scales = stored[name + SCALE_SUFFIX].float()
            bound = scales.reshape(-1, *[1] * (value.dim() - 1)) / 2
            assert bool(((value - trained[name]).abs() <= bound * (1 + 1e-6) + 1e-12).all())
            assert torch.equal(value, dequantize_int8(stored[name], stored[name + SCALE_SUFFIX]))
        else:
            assert torch.equal(value, stored[name].float())
    again = applied.state()
    assert all(torch.equal(again[n], t) for n, t in stored.items())


def test_int8_patches_that_do_not_fit_are_refused(random_base, int8_space):
    config = int8_space.preset("bn")
    applied = random_base.apply(config, int8_space)
    stored = applied.state()
    weight = next(n for n, t in stored.items() if t.dtype == torch.int8)
    for broken, message in [
        ({k: v for k, v in stored.items() if k != weight + SCALE_SUFFIX}, "missing tensor"),
        ({**stored, weight: stored[weight].float()}, "expected torch.int8"),
        ({**stored, weight + SCALE_SUFFIX: torch.ones(1, dtype=torch.float16)}, "one scale"),
        (applied.state("float32"), "missing tensor"),
    ]:
        with pytest.raises(UserError, match=message):
            applied.load(broken)
