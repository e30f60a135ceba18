"""How numbers print, in every room: byte sizes and the mark for a missing value.

Imports nothing: the command line's help and argument errors use it without loading torch.

Example:
    >>> kib(104280), size_text(3 * 1024**2), number_text(None, ".3f")
    ('101.8 KiB', '3.0 MiB', '-')
"""

from __future__ import annotations

__all__ = ["MISSING", "kib", "number_text", "size_text"]

#: What a table or a line shows for a value it does not have.
MISSING = "-"


def kib(n: float) -> str:
    """Bytes in KiB (patches are tens to hundreds of them)."""
    return f"{n / 1024:,.1f} KiB"


def size_text(n: float) -> str:
    """Bytes in the largest binary unit that keeps the number at least 1 (B to GiB)."""
    for unit in ("B", "KiB", "MiB"):
        if n < 1024:
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} GiB"


def number_text(value: float | None, spec: str) -> str:
    """``value`` in ``spec`` (a format spec), or :data:`MISSING` for None."""
    return MISSING if value is None else format(value, spec)
