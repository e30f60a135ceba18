from __future__ import annotations

import math

import pytest
import torch

from spotpatch import UserError
from spotpatch.spaces import (
    DTYPES,
    SCALE_SUFFIX,
    dequantize_int8,
    folded_norms,
    from_stored,
    norm_eps,
    quantize_int8,
    scale_axis,
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
    norm = {f"n.{t}": (8,) for t in ("weight", "bias", "running_mean", "running_var")}
    shapes = {"c.weight": (8, 4, 3, 3), "c.bias": (8,), "l.lora_A": (4, 36), "l.lora_B": (8, 4)}
    shapes |= norm | {"x.weight": (8,)}  # a lone 1-D weight is no norm layer
    assert DTYPES == ("float32", "float16", "int8")
    for dtype in ("float32", "float16"):
        assert stored_layout(shapes, dtype) == {n: (s, dtype) for n, s in shapes.items()}
    assert stored_layout(shapes, "int8") == {
        "c.weight": ((8, 4, 3, 3), "int8"),
        f"c.weight{SCALE_SUFFIX}": ((8,), "float16"),
        "c.bias": ((8,), "float16"),
        "l.lora_A": ((4, 36), "int8"),
        f"l.lora_A{SCALE_SUFFIX}": ((4,), "float16"),
        "l.lora_B": ((8, 4), "int8"),
        f"l.lora_B{SCALE_SUFFIX}": ((4,), "float16"),  # one per rank column
        "n.weight": ((8,), "float16"),  # the norm's affine map: scale...
        "n.bias": ((8,), "float16"),  # ... and shift; no running statistics
        "x.weight": ((8,), "float16"),
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
    plus 2 per scale, a norm 2 bytes per channel for its scale and 2 for its shift, everything
    else 2 bytes an element."""
    config = int8_space.preset("lora4")
    tensors = int8_space.patch_tensors(config)
    stats = {f"{m}.{t}" for m in folded_norms(tensors) for t in ("running_mean", "running_var")}
    assert stats and any(n.endswith("lora_B") for n in tensors)
    expected = sum(
        math.prod(s) + 2 * s[scale_axis(n)] if len(s) >= 2 else 2 * math.prod(s)
        for n, s in tensors.items()
        if n not in stats
    )
    assert int8_space.patch_bytes(config) == expected
    parts = int8_space.head_bytes() + sum(
        int8_space.site_bytes(int8_space.site(n), k) for n, k in config.kinds.items()
    )
    assert parts == expected
    full = int8_space.with_options(dtype="float32").patch_bytes(config)
    assert expected <= 0.3 * full


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
    eps = norm_eps(applied.model)
    norms = folded_norms(int8_space.patch_tensors(config))
    for name, value in ((n, model[n]) for n in int8_space.patch_tensors(config)):
        m, _, leaf = name.rpartition(".")
        if m in norms:
            # The norm computes the map it trained to, up to float16 rounding.
            w, b, mean, var = (
                trained[f"{m}.{t}"] for t in ("weight", "bias", "running_mean", "running_var")
            )
            scale = w / torch.sqrt(var + eps[m])
            want = {"weight": scale, "bias": b - mean * scale}
            if leaf in want:
                torch.testing.assert_close(value, want[leaf], rtol=1e-3, atol=1e-4)
                assert torch.equal(value, stored[name].float())
            else:
                assert torch.equal(
                    value, torch.full_like(value, 0.0 if leaf == "running_mean" else 1 - eps[m])
                )
        elif stored[name].dtype == torch.int8:
            axis = scale_axis(name)
            scales = stored[name + SCALE_SUFFIX].float()
            shape = [1] * value.dim()
            shape[axis] = -1
            bound = scales.reshape(shape) / 2
            assert bool(((value - trained[name]).abs() <= bound * (1 + 1e-6) + 1e-12).all())
            assert torch.equal(
                value, dequantize_int8(stored[name], stored[name + SCALE_SUFFIX], axis)
            )
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


def test_files_of_int8_layout_1_still_read(random_base, int8_space):
    """Patches stored before norms were folded and lora_B took column scales: every norm tensor
    float16, every weight's scales per output channel."""
    config = int8_space.preset("lora4")
    applied = random_base.apply(config, int8_space, seed=3)
    shapes = int8_space.patch_tensors(config)
    old = {}
    for name, t in applied.state("float32").items():
        if t.dim() >= 2:
            old[name], old[name + SCALE_SUFFIX] = quantize_int8(t)
        else:
            old[name] = t.to(torch.float16)
    got = from_stored(old, shapes, "int8")
    for name in shapes:
        if old[name].dtype == torch.int8:
            assert torch.equal(got[name], dequantize_int8(old[name], old[name + SCALE_SUFFIX]))
        else:
            assert torch.equal(got[name], old[name])
