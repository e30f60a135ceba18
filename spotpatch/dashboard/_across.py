"""The report across tasks as the dashboard shows it: a plain record, no plotting here.

:func:`across_tasks` lays a :class:`~spotpatch.studies.FleetReport` out as the section draws
it: the report's own table cells and sentences (:func:`spotpatch.studies.report_table`, the
renderer ``spotpatch report`` prints with), and the points of the difficulty scatter.
"""

from __future__ import annotations

from dataclasses import dataclass

from spotpatch.studies import (
    Cell,
    FleetReport,
    claim_lines,
    report_footnotes,
    report_table,
)

__all__ = ["DifficultyPoint", "AcrossTasks", "across_tasks"]


@dataclass(frozen=True)
class DifficultyPoint:
    """A study in the difficulty scatter: it has both a difficulty and an answer."""

    study: str
    difficulty: float
    bytes_pct: float
    map: float


@dataclass(frozen=True)
class AcrossTasks:
    """The "Across tasks" section: the table, the claims, and difficulty against patch size.

    Example:
        >>> data = across_tasks(fleet_report(storage))  # doctest: +SKIP
        >>> data.header[:2], [row[0].text for row in data.rows]  # doctest: +SKIP
        (['study', 'difficulty'], ['pets', 'birds'])
    """

    rule: str
    header: tuple[str, ...]
    rows: tuple[tuple[Cell, ...], ...]
    footnotes: tuple[str, ...]
    claims: tuple[str, ...]
    notes: tuple[str, ...]
    points: tuple[DifficultyPoint, ...]
    rho: float | None
    p_value: float | None


def across_tasks(report: FleetReport) -> AcrossTasks:
    """The section's record of ``report``: rows in the report's order (by difficulty)."""
    header, rows = report_table(report)
    points = tuple(
        DifficultyPoint(r.study, r.difficulty, r.answer.bytes_pct, r.answer.map)
        for r in report.rows
        if r.difficulty is not None and r.answer is not None
    )
    claims = report.claims
    return AcrossTasks(
        rule=report.rule,
        header=tuple(header),
        rows=tuple(tuple(row) for row in rows),
        footnotes=report_footnotes(report),
        claims=claim_lines(claims),
        notes=claims.notes,
        points=points,
        rho=claims.rho,
        p_value=claims.p_value,
    )
