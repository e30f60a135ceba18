"""How the CLI prints: aligned tables and byte sizes. Imports nothing from spotpatch."""

from __future__ import annotations

__all__ = ["kib", "table"]


def table(rows: list[list[str]], header: list[str]) -> str:
    widths = [max(len(str(r[i])) for r in [header, *rows]) for i in range(len(header))]

    def line(r):
        return "  ".join(
            str(v).rjust(w) if i else str(v).ljust(w)
            for i, (v, w) in enumerate(zip(r, widths, strict=True))
        )

    return "\n".join([line(header), line(["-" * w for w in widths]), *map(line, rows)])


def kib(n: int) -> str:
    return f"{n / 1024:,.1f} KiB"
