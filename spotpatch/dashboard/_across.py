"""The report across tasks as the dashboard shows it: a plain record, no plotting here.

:func:`across_tasks` lays a :class:`~spotpatch.studies.FleetReport` out as the section draws
it: the table's cells in column order, the difference to the full fine-tune in mAP points, the
claims as sentences with the report's notes, and the points of the difficulty scatter. The
numbers are the report's own (``studies`` computes them); only their layout is decided here.
"""

from __future__ import annotations

from dataclasses import dataclass

from spotpatch.studies import (
    FleetReport,
    TechniqueResult,
    claim_lines,
    delta_text,
    held_header,
    held_text,
)

__all__ = ["AcrossRow", "DifficultyPoint", "AcrossTasks", "across_tasks", "number_text"]


@dataclass(frozen=True)
class AcrossRow:
    """One study's row of the table.

    Attributes:
        study: the study (its task).
        difficulty: full fine-tune mAP minus head-only mAP (None without both).
        techniques: the best run of each technique, in the order of
            :attr:`AcrossTasks.techniques` (None: the study did not run it).
        selected: the searched patch the rule picks (None: none, see ``note``).
        delta: ``selected``'s mAP minus the full fine-tune's, in mAP points, as the report
            prints it (with its spread and seeds where ``spotpatch confirm`` retrained both).
        note: why ``selected`` is None, when it is.
        held: the smallest searched patch retrained within the rule's distance of the full
            fine-tune, as the report prints it (``-`` without retrainings).
    """

    study: str
    difficulty: float | None
    techniques: tuple[TechniqueResult | None, ...]
    selected: TechniqueResult | None
    delta: str
    note: str | None
    held: str = "-"


@dataclass(frozen=True)
class DifficultyPoint:
    """A study in the difficulty scatter: it has both a difficulty and a selected patch."""

    study: str
    difficulty: float
    bytes_pct: float
    map: float


@dataclass(frozen=True)
class AcrossTasks:
    """The "Across tasks" section: the table, the claims, and difficulty against patch size.

    Example:
        >>> data = across_tasks(fleet_report(storage, "within=1.0"))  # doctest: +SKIP
        >>> data.techniques, [r.study for r in data.rows]  # doctest: +SKIP
        (('head', 'full'), ['pets', 'birds'])
    """

    rule: str
    techniques: tuple[str, ...]
    rows: tuple[AcrossRow, ...]
    claims: tuple[str, ...]
    notes: tuple[str, ...]
    points: tuple[DifficultyPoint, ...]
    rho: float | None
    p_value: float | None
    held_header: str | None = None


def number_text(value: float | None, spec: str) -> str:
    """``value`` in ``spec`` (a format spec), or ``-`` for None."""
    return "-" if value is None else format(value, spec)


def across_tasks(report: FleetReport) -> AcrossTasks:
    """The section's record of ``report``: rows in the report's order (by difficulty)."""
    rows = tuple(
        AcrossRow(
            study=r.study,
            difficulty=r.difficulty,
            techniques=tuple(r.techniques.get(t) for t in report.techniques),
            selected=r.selected,
            delta=delta_text(r),
            note=r.note,
            held=held_text(r),
        )
        for r in report.rows
    )
    points = tuple(
        DifficultyPoint(r.study, r.difficulty, r.selected.bytes_pct, r.selected.map)
        for r in rows
        if r.difficulty is not None and r.selected is not None
    )
    claims = report.claims
    return AcrossTasks(
        rule=report.rule,
        techniques=report.techniques,
        rows=rows,
        claims=claim_lines(claims),
        notes=claims.notes,
        points=points,
        rho=claims.rho,
        p_value=claims.p_value,
        held_header=held_header(claims),
    )
