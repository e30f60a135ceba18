"""What the dashboard shows, computed from stored studies: plain records, no plotting here
(placement, bytes per site and the report across tasks have modules of their own).

Every record is drawn by one function of ``_figures``; the tests check these records and the
browser test checks the drawing.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

from spotpatch._errors import UserError
from spotpatch.dashboard._across import AcrossTasks, across_tasks
from spotpatch.dashboard._placement import Placement, placement
from spotpatch.dashboard._site_bytes import SiteBytes, site_bytes
from spotpatch.search import (
    Answer,
    FrontPoint,
    StudyMeta,
    TrialRecord,
    answer_inputs,
    front_points,
    hypervolume,
    pareto_front,
    parse_rule,
    relaxation_record,
    relaxation_trials,
    select,
    study_meta,
    trial_records,
)
from spotpatch.studies import each_study, report_of, storage_label

__all__ = [
    "TrialPoint",
    "TrialsScatter",
    "HypervolumeSeries",
    "FleetView",
    "StudyPanel",
    "DashboardData",
    "trials_scatter",
    "hypervolume_series",
    "fleet_view",
    "dashboard_data",
    "storage_label",
    "load_studies",
]


@dataclass(frozen=True)
class TrialPoint:
    """A completed trial as the scatter shows it.

    Attributes:
        number: the Optuna trial number.
        map: val mAP in [0, 1].
        map50: val AP at IoU 0.5 (None when not recorded).
        bytes: the patch payload in bytes.
        summary: the config in short (``full x3, bn x12``).
        source: ``sampler``, ``relaxation`` (warm start), ``preset`` or ``retry``.
        preset: the fixed recipe the config equals (``head``, ``full``...), else None.
        on_front: whether the trial is on the study's Pareto front.
    """

    number: int
    map: float
    map50: float | None
    bytes: int
    summary: str
    source: str
    preset: str | None
    on_front: bool


@dataclass(frozen=True)
class TrialsScatter:
    """mAP against patch bytes for every completed trial of one study, and its answer (or the
    rule's pick: ``selected``, with the mean of its runs in ``answer``).

    Example:
        >>> scatter = trials_scatter(study, None)  # doctest: +SKIP
        >>> [p.number for p in scatter.front], scatter.selected  # doctest: +SKIP
        ([0, 4, 9], 4)
    """

    study: str
    points: tuple[TrialPoint, ...]
    front: tuple[FrontPoint, ...]
    selected: int | None
    selection_note: str | None
    full_bytes: int
    head_bytes: int
    failed: tuple[tuple[int, str], ...]
    answer: Answer | None = None


@dataclass(frozen=True)
class HypervolumeSeries:
    """The front's hypervolume after each completed trial of one study.

    Attributes:
        trials: trials asked so far when each completed (trial number + 1).
        hypervolume: the hypervolume of every completed trial up to then (see
            :func:`spotpatch.search.hypervolume`).
        warm_start: ``relaxation`` or ``none``: lets warm and cold studies be compared.
        relaxation_trials: the warm start's cost in trial-equivalents (None without one).
    """

    study: str
    sampler: str
    warm_start: str
    trials: tuple[int, ...]
    hypervolume: tuple[float, ...]
    relaxation_trials: float | None


@dataclass(frozen=True)
class FleetView:
    """Every task's answer (or the rule's pick) against one full detector per task; ``maps``
    are the means of each config's runs, as everywhere else.

    Totals cover the tasks with a selected patch only (``missing`` lists the others).
    """

    rule: str
    tasks: tuple[str, ...]
    trials: tuple[int, ...]
    maps: tuple[float, ...]
    patch_bytes: tuple[int, ...]
    full_bytes: tuple[int, ...]
    missing: tuple[str, ...]

    @property
    def total_patch_bytes(self) -> int:
        return sum(self.patch_bytes)

    @property
    def total_full_bytes(self) -> int:
        return sum(self.full_bytes)

    @property
    def saving(self) -> float | None:
        """How many times smaller the patches are than the full detectors."""
        if not self.patch_bytes or self.total_patch_bytes <= 0:
            return None
        return self.total_full_bytes / self.total_patch_bytes


@dataclass(frozen=True)
class StudyPanel:
    """One study's section of the page."""

    name: str
    meta: StudyMeta
    done: int
    scatter: TrialsScatter
    site_bytes: SiteBytes


@dataclass(frozen=True)
class DashboardData:
    """Everything on the page."""

    storage: str
    rule: str
    generated: str
    studies: tuple[StudyPanel, ...]
    hypervolume: tuple[HypervolumeSeries, ...]
    placement: Placement
    fleet: FleetView
    across: AcrossTasks


# -- one study ---------------------------------------------------------------------------------
def trials_scatter(
    study, rule: str | None, *, records: list[TrialRecord] | None = None
) -> TrialsScatter:
    """Every completed trial of ``study`` as (bytes, mAP), its front and its answer (``rule``
    None) or the trial ``rule`` picks.

    Failed trials are listed with their errors (they have no point).
    """
    import optuna

    meta = study_meta(study)
    records = trial_records(study) if records is None else records
    points = front_points(records)
    front = pareto_front(points)
    on_front = {p.number for p in front}
    answer, note = None, ""
    try:
        answer = select(answer_inputs(study, records), rule)
    except UserError as e:
        note = str(e)
    selected = None if answer is None else answer.trial
    shown = [
        TrialPoint(
            number=r.number,
            map=r.map,
            map50=r.map50,
            bytes=r.patch_bytes,
            summary=r.summary,
            source=r.source,
            preset=r.preset,
            on_front=r.number in on_front,
        )
        for r in records
        if r.complete
    ]
    failed = tuple(
        (r.number, r.error or "failed") for r in records if r.state == optuna.trial.TrialState.FAIL
    )
    return TrialsScatter(
        study=study.study_name,
        points=tuple(shown),
        front=tuple(front),
        selected=selected,
        selection_note=note or None,
        full_bytes=meta.full_bytes,
        head_bytes=meta.head_bytes,
        failed=failed,
        answer=answer,
    )


def hypervolume_series(study, *, records: list[TrialRecord] | None = None) -> HypervolumeSeries:
    """The hypervolume of the completed trials so far, after each completed trial."""
    meta = study_meta(study)
    records = trial_records(study) if records is None else records
    front: list[FrontPoint] = []
    xs, hvs = [], []
    for point in sorted(front_points(records), key=lambda p: p.number):
        # The front so far plus the new point is all the next front can hold.
        front = pareto_front([*front, point])
        xs.append(point.number + 1)
        hvs.append(hypervolume(front, meta.full_bytes))
    return HypervolumeSeries(
        study=study.study_name,
        sampler=meta.sampler,
        warm_start=meta.warm_start,
        trials=tuple(xs),
        hypervolume=tuple(hvs),
        relaxation_trials=relaxation_trials(relaxation_record(study), records),
    )


# -- across studies ----------------------------------------------------------------------------
def fleet_view(
    names: Sequence[str],
    metas: Sequence[StudyMeta],
    chosen: Sequence[Answer | None],
    rule: str,
) -> FleetView:
    """Every study's answer (or pick) against one full detector per task."""
    rows = [(n, m, p) for n, m, p in zip(names, metas, chosen, strict=True) if p is not None]
    return FleetView(
        rule=rule,
        tasks=tuple(n for n, _, _ in rows),
        trials=tuple(p.trial for _, _, p in rows),
        maps=tuple(p.map for _, _, p in rows),
        patch_bytes=tuple(p.patch_bytes for _, _, p in rows),
        full_bytes=tuple(m.full_bytes for _, m, _ in rows),
        missing=tuple(n for n, p in zip(names, chosen, strict=True) if p is None),
    )


def load_studies(storage) -> list:
    """Every spotpatch study of ``storage``, by name, sharing one trial cache.

    Optuna's study summaries read every trial of every study, once per call; listing the
    studies by their records and loading them through one cached storage reads each finished
    trial once (and, when the same cached storage is passed again, only new trials).

    Raises:
        UserError: no spotpatch study in the storage.
    """
    import optuna

    return list(each_study(optuna.storages.get_storage(storage)))


def dashboard_data(storage, rule: str | None = None) -> DashboardData:
    """Everything the dashboard shows for every spotpatch study of ``storage``: each study's
    answer (``rule`` None) or the trial ``rule`` picks, the same in every section.

    Raises:
        UserError: a malformed rule, or no spotpatch study in the storage.
    """
    parsed = None if rule is None else parse_rule(rule)
    studies = load_studies(storage)
    all_records = [trial_records(s) for s in studies]
    panels, chosen = [], []
    for study, records in zip(studies, all_records, strict=True):
        scatter = trials_scatter(study, parsed, records=records)
        chosen.append(scatter.answer)
        panels.append(
            StudyPanel(
                name=study.study_name,
                meta=study_meta(study),
                done=len(scatter.points),
                scatter=scatter,
                site_bytes=site_bytes(study, scatter.selected, records=records, storage=storage),
            )
        )
    shown = "answer" if parsed is None else str(parsed)
    return DashboardData(
        storage=storage_label(storage),
        rule=shown,
        generated=datetime.now(UTC).strftime("%Y-%m-%d %H:%M:%S UTC"),
        studies=tuple(panels),
        hypervolume=tuple(
            hypervolume_series(s, records=r) for s, r in zip(studies, all_records, strict=True)
        ),
        placement=placement(studies, [p.scatter.selected for p in panels], records=all_records),
        fleet=fleet_view([p.name for p in panels], [p.meta for p in panels], chosen, shown),
        across=across_tasks(report_of(studies, parsed, records=all_records)),
    )
