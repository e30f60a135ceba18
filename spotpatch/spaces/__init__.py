"""What can be patched: sites of a detector, patch kinds, configs, applying and storing patches
(at float32, float16 or int8).

Imports nothing from the other rooms.
"""

from __future__ import annotations

from spotpatch.spaces._apply import AppliedPatch, LoRAConv2d, LoRALinear, apply_patch, norm_eps
from spotpatch.spaces._dtypes import (
    DTYPES,
    SCALE_SUFFIX,
    check_dtype,
    dequantize_int8,
    folded_norms,
    from_stored,
    quantize_int8,
    scale_axis,
    stored_layout,
    to_stored,
)
from spotpatch.spaces._io import Patch, load_patch, payload_bytes, save_patch, state_sha256
from spotpatch.spaces._kinds import KIND_NAMES, PatchKind, parse_kind
from spotpatch.spaces._mixture import MixedPatch
from spotpatch.spaces._sites import HeadTensor, PatchSite, class_head_modules, discover_sites
from spotpatch.spaces._sizes import parse_bytes
from spotpatch.spaces._space import GRANULARITIES, PRESETS, PatchConfig, PatchSpace

__all__ = [
    "AppliedPatch",
    "DTYPES",
    "GRANULARITIES",
    "HeadTensor",
    "KIND_NAMES",
    "LoRAConv2d",
    "LoRALinear",
    "MixedPatch",
    "PRESETS",
    "Patch",
    "PatchConfig",
    "PatchKind",
    "PatchSite",
    "PatchSpace",
    "SCALE_SUFFIX",
    "norm_eps",
    "folded_norms",
    "scale_axis",
    "check_dtype",
    "from_stored",
    "to_stored",
    "apply_patch",
    "class_head_modules",
    "dequantize_int8",
    "discover_sites",
    "load_patch",
    "parse_bytes",
    "parse_kind",
    "payload_bytes",
    "quantize_int8",
    "save_patch",
    "state_sha256",
    "stored_layout",
]
