"""Byte counts as users write them (``250000``, ``200kB``, ``1.5MiB``, ``2GB``): a fleet's
budget, a selection rule's cap, a cache's memory limit."""

from __future__ import annotations

import re

from spotpatch._errors import UserError

__all__ = ["parse_bytes"]

_UNITS = {"": 1, "b": 1, "kb": 1000, "kib": 1024, "mb": 1000**2, "mib": 1024**2}
_UNITS |= {"gb": 1000**3, "gib": 1024**3, "tb": 1000**4, "tib": 1024**4}
_SIZE = re.compile(r"\s*([0-9]+(?:\.[0-9]+)?)\s*([A-Za-z]*)\s*")


def parse_bytes(text: str) -> int:
    """``123``, ``200kB``, ``1.5MiB`` -> bytes; UserError otherwise.

    Example:
        >>> parse_bytes("1.5KiB")
        1536
    """
    m = _SIZE.fullmatch(str(text))
    if not m or m.group(2).lower() not in _UNITS:
        raise UserError(f"not a byte count: {text!r} (e.g. 250000, 200KiB, 1.5MB)")
    return int(float(m.group(1)) * _UNITS[m.group(2).lower()])
