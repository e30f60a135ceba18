"""How a patch stores its tensors at each storage dtype: the layout of a patch file, and int8.

``float32`` and ``float16`` store every tensor as it is, cast. ``int8`` stores every tensor of
two or more dimensions (conv and linear weights, the class head's weight, LoRA's ``lora_A`` and
``lora_B``) as int8 with one scale per output channel (dimension 0), and every 1-D tensor (norm
affine and running statistics, biases) as float16. A weight's scales are a float16 tensor of
their own in the file, named after it: ``<name>.qscale``.

The layout is the one place that says what a patch file holds: the byte accounting of
:class:`~spotpatch.spaces.PatchSpace` sums it, and :class:`~spotpatch.spaces.AppliedPatch`
writes and reads by it, so the bytes a space reports are the payload of the file. A stored name
is read as a scale only because the layout of the patch's config puts it there (it follows a
weight it scales), never by its suffix alone; a layout in which a scale's name would be a
patch tensor's own name is refused.
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


def stored_layout(
    shapes: Mapping[str, tuple[int, ...]], dtype: str
) -> dict[str, tuple[tuple[int, ...], str]]:
    """Every tensor a patch file holds for patch tensors of ``shapes``: name -> (shape, element
    type), in order, each int8 weight followed by its scales.

    Example:
        >>> stored_layout({"w": (8, 4), "bn.bias": (8,)}, "int8")
        {'w': ((8, 4), 'int8'), 'w.qscale': ((8,), 'float16'), 'bn.bias': ((8,), 'float16')}
    """
    check_dtype(dtype)
    layout: dict[str, tuple[tuple[int, ...], str]] = {}
    for name, shape in shapes.items():
        shape = tuple(shape)
        as_ = _stored_as(shape, dtype)
        layout[name] = (shape, as_)
        if as_ == "int8":
            scale = name + SCALE_SUFFIX
            if scale in shapes:
                raise UserError(f"patch tensor {scale!r} has the name of the scales of {name!r}")
            layout[scale] = ((shape[0],), "float16")
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


def quantize_int8(weight: Tensor) -> tuple[Tensor, Tensor]:
    """Symmetric int8 with one float16 scale per output channel (dimension 0).

    A channel's scale is ``max |w| / 127``, rounded up to a float16, and its values are
    ``round(w / scale)``. Rounding the scale up keeps every ``|w / scale|`` within 127, so no
    value is clamped and each one is off by at most half its channel's scale after
    :func:`dequantize_int8`. An all-zero channel gets scale 0 and is stored exactly.

    Returns:
        ``(values, scales)``: int8 of ``weight``'s shape, and float16 of shape ``(channels,)``.

    Example:
        >>> q, s = quantize_int8(torch.tensor([[0.9921875, -0.5, 0.1], [0.0, 0.0, 0.0]]))
        >>> q.tolist(), s.tolist()
        ([[127, -64, 13], [0, 0, 0]], [0.0078125, 0.0])
        >>> dequantize_int8(q, s).tolist()[0]
        [0.9921875, -0.5, 0.1015625]
    """
    w = weight.detach().to("cpu", torch.float32)
    flat = w.reshape(w.shape[0], -1)
    peak = flat.abs().amax(dim=1) if flat.shape[1] else flat.new_zeros(flat.shape[0])
    scale = _float16_at_least(peak / _QMAX)
    divisor = scale.to(torch.float32).clamp_min(torch.finfo(torch.float32).tiny).unsqueeze(1)
    values = torch.round(flat / divisor).clamp_(-_QMAX, _QMAX).to(torch.int8)
    return values.reshape(w.shape).contiguous(), scale


def dequantize_int8(values: Tensor, scales: Tensor) -> Tensor:
    """The float32 weight that int8 ``values`` with per-output-channel ``scales`` stand for."""
    per_channel = scales.to(torch.float32).reshape(-1, *([1] * (values.dim() - 1)))
    return values.to(torch.float32) * per_channel


# -- tensors in, tensors out -------------------------------------------------------------------
def to_stored(tensors: Mapping[str, Tensor], dtype: str) -> dict[str, Tensor]:
    """Patch tensors as a patch file holds them at ``dtype``: detached CPU copies, in layout
    order (see :func:`stored_layout`)."""
    layout = stored_layout({n: tuple(t.shape) for n, t in tensors.items()}, dtype)
    stored: dict[str, Tensor] = {}
    for name, tensor in tensors.items():
        as_ = layout[name][1]
        if as_ == "int8":
            stored[name], stored[name + SCALE_SUFFIX] = quantize_int8(tensor)
        else:
            stored[name] = tensor.detach().to("cpu", _TORCH[as_]).contiguous().clone()
    return stored


def from_stored(
    stored: Mapping[str, Tensor], shapes: Mapping[str, tuple[int, ...]], dtype: str
) -> dict[str, Tensor]:
    """The patch tensors of ``shapes`` from what a patch file holds at ``dtype``: int8 weights
    dequantized to float32, other tensors as stored.

    Raises:
        UserError: a tensor the layout does not have or lacks, a weight that is not int8 where
            the layout says int8, or scales that do not have one value per output channel.
    """
    layout = stored_layout(shapes, dtype)
    names, expected = set(stored), set(layout)
    if names != expected:
        extra, missing = sorted(names - expected), sorted(expected - names)
        what = f"unexpected tensor {extra[0]!r}" if extra else f"missing tensor {missing[0]!r}"
        raise UserError(f"patch does not match its config: {what}")
    tensors: dict[str, Tensor] = {}
    for name in shapes:
        value = stored[name]
        if layout[name][1] != "int8":
            tensors[name] = value
            continue
        scales = stored[name + SCALE_SUFFIX]
        if value.dtype != torch.int8:
            raise UserError(f"patch tensor {name!r} is {value.dtype}, expected torch.int8")
        if value.dim() < 1 or tuple(scales.shape) != (value.shape[0],):
            raise UserError(
                f"patch tensor {name + SCALE_SUFFIX!r} has shape {tuple(scales.shape)}, expected "
                f"one scale per output channel of {name!r}"
            )
        tensors[name] = dequantize_int8(value, scales)
    return tensors
