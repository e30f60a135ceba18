"""What can be patched: sites of a detector, patch kinds, configs, applying and storing patches.

Imports nothing from the other rooms.
"""

from __future__ import annotations

from spotpatch.spaces._apply import AppliedPatch, LoRAConv2d, LoRALinear, apply_patch
from spotpatch.spaces._io import Patch, load_patch, payload_bytes, save_patch, state_sha256
from spotpatch.spaces._kinds import KIND_NAMES, PatchKind, parse_kind
from spotpatch.spaces._mixture import MixedPatch
from spotpatch.spaces._sites import HeadTensor, PatchSite, class_head_modules, discover_sites
from spotpatch.spaces._space import (
    DTYPES,
    GRANULARITIES,
    PRESETS,
    PatchConfig,
    PatchSpace,
    dtype_size,
)

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
    "apply_patch",
    "class_head_modules",
    "discover_sites",
    "dtype_size",
    "load_patch",
    "parse_kind",
    "payload_bytes",
    "save_patch",
    "state_sha256",
]
