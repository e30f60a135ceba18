"""Patch kinds: what a patch stores for one site.

``shared`` stores nothing (the site keeps the base's tensors), ``bn`` the site's norm layer
(affine and running statistics), ``dw`` a depthwise weight and its norm, ``lora<r>`` a rank-r
delta ``B @ A`` on the weight plus the norm, ``full`` every tensor of the site.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from spotpatch._errors import UserError

__all__ = ["PatchKind", "parse_kind", "KIND_NAMES"]

#: The kind families in order of strength (what a fallback steps down through).
KIND_NAMES = ("shared", "bn", "dw", "lora<r>", "full")
_STRENGTH = {"shared": 0, "bn": 1, "dw": 2, "lora": 3, "full": 4}
_LORA = re.compile(r"lora(\d+)")
MAX_LORA_RANK = 256


@dataclass(frozen=True, order=False)
class PatchKind:
    """One kind of patch for a site.

    Example:
        >>> parse_kind("lora4")
        PatchKind(family='lora', rank=4)
        >>> str(parse_kind("bn"))
        'bn'
    """

    family: str
    rank: int = 0

    def __str__(self) -> str:
        return f"lora{self.rank}" if self.family == "lora" else self.family

    @property
    def strength(self) -> tuple[int, int]:
        """Sort key: shared < bn < dw < lora (by rank) < full."""
        return (_STRENGTH[self.family], self.rank)

    @property
    def stores_norm(self) -> bool:
        """Every kind but ``shared`` carries the site's norm layer."""
        return self.family != "shared"


def parse_kind(name: str | PatchKind) -> PatchKind:
    """Parse a kind name (``shared``, ``bn``, ``dw``, ``lora<r>``, ``full``).

    Raises:
        UserError: for a name that is none of these.
    """
    if isinstance(name, PatchKind):
        return name
    if not isinstance(name, str):
        raise UserError(f"patch kind must be a string, got {name!r}")
    if name in ("shared", "bn", "dw", "full"):
        return PatchKind(name)
    match = _LORA.fullmatch(name)
    if match:
        rank = int(match.group(1))
        if not 1 <= rank <= MAX_LORA_RANK:
            raise UserError(f"lora rank must be in 1..{MAX_LORA_RANK}, got {name!r}")
        return PatchKind("lora", rank)
    raise UserError(f"unknown patch kind {name!r} (expected one of {', '.join(KIND_NAMES)})")
