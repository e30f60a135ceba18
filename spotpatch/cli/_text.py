"""How the CLI prints: aligned tables (sizes and missing values as every room prints them).
Imports only ``spotpatch._format``: the parser stays cheap."""

from __future__ import annotations

from spotpatch._format import MISSING, kib

__all__ = ["MISSING", "ANSWER_HEADER", "answer_cells", "kib", "table"]

#: The header of :func:`answer_cells`' columns.
ANSWER_HEADER = ["answer: trial", "patch", "val mAP", "Δ vs full"]


def table(rows: list[list[str]], header: list[str]) -> str:
    widths = [max(len(str(r[i])) for r in [header, *rows]) for i in range(len(header))]

    def line(r):
        return "  ".join(
            str(v).rjust(w) if i else str(v).ljust(w)
            for i, (v, w) in enumerate(zip(r, widths, strict=True))
        )

    return "\n".join([line(header), line(["-" * w for w in widths]), *map(line, rows)])


def answer_cells(answer, full_bytes: int) -> list[str]:
    """A study's answer as table cells: its trial, bytes (% of the full detector), mean val
    mAP in the search, and its Δ to the full fine-tune (the fresh seeds' where confirmed, and
    the images they were scored on where not val alone; where no patch smaller than the full
    fine-tune held, how many were walked)."""
    from spotpatch.search import to_points

    if answer is None:
        return [MISSING] * len(ANSWER_HEADER)
    c = answer.confirmation
    if c is not None:
        delta = c.delta_text() or f"confirmation {c.state}"
    elif answer.full_map is not None:
        delta = f"{to_points(answer.map - answer.full_map):+.1f} (search)"
    else:
        delta = MISSING
    return [
        str(answer.trial),
        f"{kib(answer.patch_bytes)} ({100 * answer.patch_bytes / full_bytes:.1f} %)",
        f"{answer.map:.3f}",
        delta,
    ]
