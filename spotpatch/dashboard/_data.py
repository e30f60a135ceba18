"""What the dashboard shows, computed from stored studies: plain records, no plotting here
(placement and bytes per site have modules of their own).

Every record is drawn by one function of ``_figures``; the tests check these records and the
browser test checks the drawing.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

from spotpatch._errors import UserError
from spotpatch.dashboard._placement import Placement, placement
from spotpatch.dashboard._site_bytes import SiteBytes, site_bytes
from spotpatch.search import (
    FrontPoint,
    front_points,
    hypervolume,
    pareto_front,
    parse_rule,
    select_point,
)
from spotpatch.studies import StudyMeta, study_meta

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

HEAD = "class head"
SOURCES = ("sampler", "relaxation", "preset", "retry")


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
    """mAP against patch bytes for every completed trial of one study.

    Example:
        >>> scatter = trials_scatter(study, "within=1.0")  # doctest: +SKIP
        >>> [p.number for p in scatter.front]  # doctest: +SKIP
        [0, 4, 9]
    """

    study: str
    points: tuple[TrialPoint, ...]
    front: tuple[FrontPoint, ...]
    selected: int | None
    selection_note: str | None
    full_bytes: int
    head_bytes: int
    failed: tuple[tuple[int, str], ...]


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
    """The selected patches of every task against one full detector per task.

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


# -- helpers -----------------------------------------------------------------------------------
def _complete(trials) -> list:
    import optuna

    return [
        t for t in trials if t.state == optuna.trial.TrialState.COMPLETE and t.values is not None
    ]


def _source(trial) -> str:
    source = trial.user_attrs.get("source")
    if source in SOURCES:
        return source
    return "preset" if source is None and trial.user_attrs.get("preset") else "sampler"


def _select(points: Sequence[FrontPoint], rule: str, full_bytes: int) -> tuple[int | None, str]:
    """The trial number a rule picks, or None with the reason."""
    if not points:
        return None, "no completed trial yet"
    try:
        return select_point(points, rule, full_bytes).number, ""
    except UserError as e:
        return None, str(e)


def _relaxation_trials(study, trials) -> float | None:
    relaxation = study.user_attrs.get("relaxation")
    if not relaxation or not relaxation.get("seconds"):
        return None
    costs = [
        t.user_attrs.get("train_seconds", 0) + t.user_attrs.get("eval_seconds", 0)
        for t in _complete(trials)
    ]
    mean = sum(costs) / len(costs) if costs else 0
    return relaxation["seconds"] / mean if mean > 0 else None


# -- one study ---------------------------------------------------------------------------------
def trials_scatter(study, rule: str, *, trials=None) -> TrialsScatter:
    """Every completed trial of ``study`` as (bytes, mAP), its front and the one ``rule`` picks.

    Failed trials are listed with their errors (they have no point).
    """
    import optuna

    meta = study_meta(study)
    trials = study.get_trials(deepcopy=False) if trials is None else trials
    points = front_points(trials)
    front = pareto_front(points)
    on_front = {p.number for p in front}
    selected, note = _select(points, rule, meta.full_bytes)
    shown = []
    for t in _complete(trials):
        attrs = t.user_attrs
        map50 = attrs.get("map50")
        shown.append(
            TrialPoint(
                number=t.number,
                map=float(t.values[0]),
                map50=float(map50) if isinstance(map50, int | float) else None,
                bytes=int(t.values[1]),
                summary=str(attrs.get("summary") or _summary(attrs.get("config"))),
                source=_source(t),
                preset=str(attrs["preset"]) if attrs.get("preset") else None,
                on_front=t.number in on_front,
            )
        )
    failed = tuple(
        (t.number, str(t.user_attrs.get("error", "failed")))
        for t in trials
        if t.state == optuna.trial.TrialState.FAIL
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
    )


def _summary(config) -> str:
    if not isinstance(config, dict) or not config:
        return "head only"
    counts: dict[str, int] = {}
    for kind in config.values():
        counts[str(kind)] = counts.get(str(kind), 0) + 1
    return ", ".join(f"{k} x{n}" for k, n in sorted(counts.items(), key=lambda kv: -kv[1]))


def hypervolume_series(study, *, trials=None) -> HypervolumeSeries:
    """The hypervolume of the completed trials so far, after each completed trial."""
    meta = study_meta(study)
    trials = study.get_trials(deepcopy=False) if trials is None else trials
    done = sorted(_complete(trials), key=lambda t: t.number)
    front: list[FrontPoint] = []
    xs, hvs = [], []
    for t in done:
        # The front so far plus the new point is all the next front can hold.
        front = pareto_front([*front, FrontPoint(t.number, float(t.values[0]), int(t.values[1]))])
        xs.append(t.number + 1)
        hvs.append(hypervolume(front, meta.full_bytes))
    return HypervolumeSeries(
        study=study.study_name,
        sampler=meta.sampler,
        warm_start=meta.warm_start,
        trials=tuple(xs),
        hypervolume=tuple(hvs),
        relaxation_trials=_relaxation_trials(study, trials),
    )


# -- across studies ----------------------------------------------------------------------------
def fleet_view(
    names: Sequence[str],
    metas: Sequence[StudyMeta],
    chosen: Sequence[TrialPoint | None],
    rule: str,
) -> FleetView:
    """The selected patch of every study against one full detector per task."""
    rows = [(n, m, p) for n, m, p in zip(names, metas, chosen, strict=True) if p is not None]
    return FleetView(
        rule=rule,
        tasks=tuple(n for n, _, _ in rows),
        trials=tuple(p.number for _, _, p in rows),
        maps=tuple(p.map for _, _, p in rows),
        patch_bytes=tuple(p.bytes for _, _, p in rows),
        full_bytes=tuple(m.full_bytes for _, m, _ in rows),
        missing=tuple(n for n, p in zip(names, chosen, strict=True) if p is None),
    )


def storage_label(storage) -> str:
    """The storage's URL with any password hidden."""
    backend = getattr(storage, "_backend", storage)  # Optuna's cached storage wraps the RDB one
    url = storage if isinstance(storage, str) else getattr(backend, "url", None)
    if not url:
        return type(storage).__name__
    try:
        from sqlalchemy.engine import make_url

        return make_url(url).render_as_string(hide_password=True)
    except Exception:  # not a URL SQLAlchemy reads: show only its scheme
        return url.split("://", 1)[0] + "://..."


def load_studies(storage) -> list:
    """Every spotpatch study of ``storage``, by name, sharing one trial cache.

    Optuna's study summaries read every trial of every study, once per call; listing the
    studies by their records and loading them through one cached storage reads each finished
    trial once (and, when the same cached storage is passed again, only new trials).
    """
    import optuna

    cached = optuna.storages.get_storage(storage)
    return [
        optuna.load_study(study_name=s.study_name, storage=cached)
        for s in sorted(cached.get_all_studies(), key=lambda s: s.study_name)
        if "spotpatch" in s.user_attrs
    ]


def dashboard_data(storage, rule: str) -> DashboardData:
    """Everything the dashboard shows for every spotpatch study of ``storage``.

    Raises:
        UserError: a malformed rule, or no spotpatch study in the storage.
    """
    rule = str(parse_rule(rule))
    studies = load_studies(storage)
    if not studies:
        raise UserError(
            f"no spotpatch study in {storage_label(storage)}: run one with `spotpatch run`"
        )
    all_trials = [s.get_trials(deepcopy=False) for s in studies]
    panels, chosen = [], []
    for study, trials in zip(studies, all_trials, strict=True):
        scatter = trials_scatter(study, rule, trials=trials)
        point = next((p for p in scatter.points if p.number == scatter.selected), None)
        chosen.append(point)
        panels.append(
            StudyPanel(
                name=study.study_name,
                meta=study_meta(study),
                done=len(scatter.points),
                scatter=scatter,
                site_bytes=site_bytes(study, scatter.selected, trials=trials),
            )
        )
    return DashboardData(
        storage=storage_label(storage),
        rule=rule,
        generated=datetime.now(UTC).strftime("%Y-%m-%d %H:%M:%S UTC"),
        studies=tuple(panels),
        hypervolume=tuple(
            hypervolume_series(s, trials=t) for s, t in zip(studies, all_trials, strict=True)
        ),
        placement=placement(studies, [p.scatter.selected for p in panels], trials=all_trials),
        fleet=fleet_view([p.name for p in panels], [p.meta for p in panels], chosen, rule),
    )
