"""How a patch stores its tensors at each storage dtype: the layout of a patch file, and int8.

``float32`` and ``float16`` store every tensor as it is, cast. ``int8`` stores every tensor of
two or more dimensions (conv and linear weights, the class head's weight, LoRA's ``lora_A`` and
``lora_B``) as int8 with float16 scales, one per output channel (dimension 0), except a LoRA
up-factor ``lora_B`` (out x rank), whose few values per output channel take one scale per rank
column instead. A weight's scales are a float16 tensor of their own in the file, named after
it: ``<name>.qscale``. A norm layer (weight, bias, running mean and variance) is stored at int8
as the affine map it computes in eval mode, two float16 vectors: ``<norm>.weight`` holds
``weight / sqrt(running_var + eps)`` and ``<norm>.bias`` ``bias - running_mean * that``; read
back, the running mean is 0 and the running variance ``1 - eps``, which computes the same map.
Every other 1-D tensor (biases) is float16.

The layout is the one place that says what a patch file holds: the byte accounting of
:class:`~spotpatch.spaces.PatchSpace` sums it, and :class:`~spotpatch.spaces.AppliedPatch`
writes and reads by it, so the bytes a space reports are the payload of the file. A stored name
is read as a scale only because the layout of the patch's config puts it there (it follows a
weight it scales), never by its suffix alone; a layout in which a scale's name would be a
patch tensor's own name is refused. Files written before norms were folded and ``lora_B`` took
column scales (int8 layout 1) still read: a stored running mean, or scales with one value per
output channel, say which layout a file has.
"""

from __future__ import annotations

import math
from collections.abc import Mapping

import torch
from torch import Tensor

from spotpatch._defaults import DTYPES
from spotpatch._errors import UserError

__all__ = [
    "DTYPES",
    "SCALE_SUFFIX",
    "folded_norms",
    "scale_axis",
    "check_dtype",
    "dequantize_int8",
    "from_stored",
    "quantize_int8",
    "stored_bytes",
    "stored_layout",
    "to_stored",
]

#: The name of a weight's per-channel scales in an int8 patch: ``<weight name>.qscale``.
SCALE_SUFFIX = ".qscale"
_TORCH = {"float32": torch.float32, "float16": torch.float16, "int8": torch.int8}
_ITEMSIZE = {"float32": 4, "float16": 2, "int8": 1}
#: Symmetric int8 uses [-127, 127], so that a channel's scale maps its largest |w| exactly and
#: zero stays zero.
_QMAX = 127


def check_dtype(dtype: str) -> str:
    """``dtype`` when it is a storage dtype; :class:`UserError` otherwise."""
    if dtype not in DTYPES:
        raise UserError(f"unknown patch dtype {dtype!r} (expected float32, float16 or int8)")
    return dtype


def _stored_as(shape: tuple[int, ...], dtype: str) -> str:
    """The element type one tensor of ``shape`` is stored as at ``dtype``."""
    if dtype != "int8":
        return dtype
    return "int8" if len(shape) >= 2 else "float16"


_NORM = ("weight", "bias", "running_mean", "running_var")


def folded_norms(shapes: Mapping[str, tuple[int, ...]]) -> list[str]:
    """The norm layers among patch tensors of ``shapes`` (module paths whose weight, bias,
    running mean and running variance are all there, 1-D and of one length): what int8 stores
    as their affine map.

    Example:
        >>> folded_norms({"bn.weight": (8,), "bn.bias": (8,), "bn.running_mean": (8,),
        ...               "bn.running_var": (8,), "conv.bias": (8,)})
        ['bn']
    """
    modules = dict.fromkeys(n.rsplit(".", 1)[0] for n in shapes if "." in n)
    out = []
    for m in modules:
        found = [tuple(shapes.get(f"{m}.{t}", ())) for t in _NORM]
        if all(len(f) == 1 for f in found) and len(set(found)) == 1:
            out.append(m)
    return out


def scale_axis(name: str) -> int:
    """The dimension an int8 tensor's scales run along: 1 (one per rank column) for a LoRA
    up-factor ``lora_B``, else 0 (one per output channel)."""
    return 1 if name.endswith(".lora_B") else 0


def stored_layout(
    shapes: Mapping[str, tuple[int, ...]], dtype: str
) -> dict[str, tuple[tuple[int, ...], str]]:
    """Every tensor a patch file holds for patch tensors of ``shapes``: name -> (shape, element
    type), in order, each int8 weight followed by its scales, each norm's running statistics
    left out at int8 (its weight and bias hold its affine map).

    Example:
        >>> layout = stored_layout({"w": (8, 4), "c.lora_B": (8, 2), "c.bias": (8,)}, "int8")
        >>> layout["w.qscale"], layout["c.lora_B.qscale"], layout["c.bias"]
        (((8,), 'float16'), ((2,), 'float16'), ((8,), 'float16'))
    """
    check_dtype(dtype)
    skipped = set()
    if dtype == "int8":
        skipped = {f"{m}.{t}" for m in folded_norms(shapes) for t in _NORM[2:]}
    layout: dict[str, tuple[tuple[int, ...], str]] = {}
    for name, shape in shapes.items():
        if name in skipped:
            continue
        shape = tuple(shape)
        as_ = _stored_as(shape, dtype)
        layout[name] = (shape, as_)
        if as_ == "int8":
            scale = name + SCALE_SUFFIX
            if scale in shapes:
                raise UserError(f"patch tensor {scale!r} has the name of the scales of {name!r}")
            layout[scale] = ((shape[scale_axis(name)],), "float16")
    return layout


def stored_bytes(shapes: Mapping[str, tuple[int, ...]], dtype: str) -> int:
    """The payload in bytes of a patch file holding patch tensors of ``shapes`` at ``dtype``."""
    return sum(
        math.prod(shape) * _ITEMSIZE[as_] for shape, as_ in stored_layout(shapes, dtype).values()
    )


# -- int8 --------------------------------------------------------------------------------------
def _float16_at_least(values: Tensor) -> Tensor:
    """The smallest float16 at or above each (non-negative, float32) value."""
    half = values.to(torch.float16)
    low = half.to(torch.float32) < values
    # For a non-negative float16 the next value up is the next bit pattern.
    half[low] = (half[low].view(torch.int16) + 1).view(torch.float16)
    return half


def quantize_int8(weight: Tensor, axis: int = 0) -> tuple[Tensor, Tensor]:
    """Symmetric int8 with one float16 scale per slice along ``axis`` (the output channels,
    dimension 0, by default).

    A slice's scale is ``max |w| / 127``, rounded up to a float16, and its values are
    ``round(w / scale)``. Rounding the scale up keeps every ``|w / scale|`` within 127, so no
    value is clamped and each one is off by at most half its slice's scale after
    :func:`dequantize_int8`. An all-zero slice gets scale 0 and is stored exactly.

    Returns:
        ``(values, scales)``: int8 of ``weight``'s shape, and float16 of shape
        ``(weight.shape[axis],)``.

    Example:
        >>> q, s = quantize_int8(torch.tensor([[0.9921875, -0.5, 0.1], [0.0, 0.0, 0.0]]))
        >>> q.tolist(), s.tolist()
        ([[127, -64, 13], [0, 0, 0]], [0.0078125, 0.0])
        >>> dequantize_int8(q, s).tolist()[0]
        [0.9921875, -0.5, 0.1015625]
    """
    w = weight.detach().to("cpu", torch.float32).movedim(axis, 0)
    flat = w.reshape(w.shape[0], -1)
    peak = flat.abs().amax(dim=1) if flat.shape[1] else flat.new_zeros(flat.shape[0])
    scale = _float16_at_least(peak / _QMAX)
    divisor = scale.to(torch.float32).clamp_min(torch.finfo(torch.float32).tiny).unsqueeze(1)
    values = torch.round(flat / divisor).clamp_(-_QMAX, _QMAX).to(torch.int8)
    return values.reshape(w.shape).movedim(0, axis).contiguous(), scale


def dequantize_int8(values: Tensor, scales: Tensor, axis: int = 0) -> Tensor:
    """The float32 weight that int8 ``values`` with ``scales`` along ``axis`` stand for."""
    shape = [1] * values.dim()
    shape[axis] = -1
    return values.to(torch.float32) * scales.to(torch.float32).reshape(shape)


# -- tensors in, tensors out -------------------------------------------------------------------
def to_stored(
    tensors: Mapping[str, Tensor], dtype: str, norm_eps: Mapping[str, float] | None = None
) -> dict[str, Tensor]:
    """Patch tensors as a patch file holds them at ``dtype``: detached CPU copies, in layout
    order (see :func:`stored_layout`).

    Args:
        norm_eps: each norm layer's ``eps`` by module path; needed at int8, where a norm is
            stored as its affine map.
    """
    layout = stored_layout({n: tuple(t.shape) for n, t in tensors.items()}, dtype)
    folded = {}
    if dtype == "int8":
        for m in folded_norms({n: tuple(t.shape) for n, t in tensors.items()}):
            w, b, mean, var = (
                tensors[f"{m}.{t}"].detach().to("cpu", torch.float32) for t in _NORM
            )
            scale = w / torch.sqrt(var + _eps(norm_eps, m))
            folded[f"{m}.weight"], folded[f"{m}.bias"] = scale, b - mean * scale
    stored: dict[str, Tensor] = {}
    for name, tensor in tensors.items():
        if name not in layout:
            continue  # a folded norm's running statistics
        tensor = folded.get(name, tensor)
        as_ = layout[name][1]
        if as_ == "int8":
            stored[name], stored[name + SCALE_SUFFIX] = quantize_int8(tensor, scale_axis(name))
        else:
            stored[name] = tensor.detach().to("cpu", _TORCH[as_]).contiguous().clone()
    return stored


def _eps(norm_eps: Mapping[str, float] | None, module: str) -> float:
    if norm_eps is None or module not in norm_eps:
        raise ValueError(f"int8 storage of norm {module!r} needs its eps")
    return float(norm_eps[module])


def from_stored(
    stored: Mapping[str, Tensor],
    shapes: Mapping[str, tuple[int, ...]],
    dtype: str,
    norm_eps: Mapping[str, float] | None = None,
) -> dict[str, Tensor]:
    """The patch tensors of ``shapes`` from what a patch file holds at ``dtype``: int8 weights
    dequantized to float32, a norm stored as its affine map read back as that map (running
    mean 0, running variance ``1 - eps``: ``norm_eps`` gives each norm's eps), other tensors
    as stored. An int8 file of layout 1 (norms as they are, ``lora_B`` with one scale per
    output channel) reads too.

    Raises:
        UserError: a tensor the layout does not have or lacks, a weight that is not int8 where
            the layout says int8, or scales that do not fit the weight.
    """
    layout = stored_layout(shapes, dtype)
    if dtype == "int8" and any(f"{m}.running_mean" in stored for m in folded_norms(shapes)):
        layout = _layout_1(shapes)
    names, expected = set(stored), set(layout)
    if names != expected:
        extra, missing = sorted(names - expected), sorted(expected - names)
        what = f"unexpected tensor {extra[0]!r}" if extra else f"missing tensor {missing[0]!r}"
        raise UserError(f"patch does not match its config: {what}")
    tensors: dict[str, Tensor] = {}
    for name in shapes:
        if name not in layout:  # a folded norm's running statistics
            m, _, leaf = name.rpartition(".")
            value = 0.0 if leaf == "running_mean" else 1.0 - _eps(norm_eps, m)
            tensors[name] = torch.full(tuple(shapes[name]), value, dtype=torch.float32)
            continue
        value = stored[name]
        if layout[name][1] != "int8":
            tensors[name] = value
            continue
        scales = stored[name + SCALE_SUFFIX]
        if value.dtype != torch.int8:
            raise UserError(f"patch tensor {name!r} is {value.dtype}, expected torch.int8")
        axis = _axis_of(name, value, scales)
        tensors[name] = dequantize_int8(value, scales, axis)
    return tensors


def _axis_of(name: str, value: Tensor, scales: Tensor) -> int:
    """The axis ``scales`` run along: the layout's, or dimension 0 (layout 1)."""
    for axis in dict.fromkeys((scale_axis(name), 0)):
        if value.dim() > axis and tuple(scales.shape) == (value.shape[axis],):
            return axis
    raise UserError(
        f"patch tensor {name + SCALE_SUFFIX!r} has shape {tuple(scales.shape)}, expected one "
        f"scale per output channel of {name!r}"
    )


def _layout_1(shapes: Mapping[str, tuple[int, ...]]) -> dict[str, tuple[tuple[int, ...], str]]:
    """int8 layout 1: every norm tensor as it is (float16), scales per output channel."""
    layout: dict[str, tuple[tuple[int, ...], str]] = {}
    for name, shape in shapes.items():
        as_ = _stored_as(tuple(shape), "int8")
        layout[name] = (tuple(shape), as_)
        if as_ == "int8":
            layout[name + SCALE_SUFFIX] = ((shape[0],), "float16")
    return layout
