"""The stored format of a spotpatch study, apart from its trials: what the study records about
itself (:class:`StudyMeta`), its warm start, who runs the warm start, the processes that asked
it for trials, its confirmation's plan, and the retrainings of earlier versions' ``confirm``.

A study stores, as Optuna study user attributes:

- ``spotpatch``: :class:`StudyMeta` (written at creation, its search settings at each run);
- ``relaxation``: the warm start's record; ``warm_start_claim``: the process running it;
- ``proposers``: how many processes asked it for trials (each seeds its sampler apart);
- ``confirmation``: the plan of its confirmation (:class:`ConfirmPlan`): how many seeds, where
  the walk starts, whether it walks, what its runs are scored on, its margin; the runs
  themselves are trials (:mod:`._record`);
- ``confirm_runs``: configs retrained with other seeds by ``spotpatch confirm`` of earlier
  versions (read as the confirmation's decision runs).

Keys are constants here and nowhere else. Imports only from ``spaces`` and ``search._record``.
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from spotpatch._errors import UserError
from spotpatch.search._record import FORMAT, TrialRecord
from spotpatch.search._units import DEFAULT_CONFIRM_MARGIN, DEFAULT_TOLERANCE

__all__ = [
    "META_KEY",
    "RELAXATION_KEY",
    "StudyMeta",
    "RelaxationPhaseRecord",
    "RelaxationRecord",
    "ConfirmPlan",
    "ConfirmRun",
    "study_meta",
    "is_spotpatch_study",
    "spotpatch_study_names",
    "write_study_meta",
    "relaxation_record",
    "write_relaxation",
    "relaxation_trials",
    "warm_start_claim",
    "write_warm_start_claim",
    "claim_proposer",
    "confirm_plan",
    "write_confirm_plan",
    "confirm_runs",
    "write_confirm_run",
]

META_KEY = "spotpatch"  # StudyMeta.to_json()
RELAXATION_KEY = "relaxation"  # the warm start's record
_WARM_START_CLAIM = "warm_start_claim"  # who runs the warm start now
_PROPOSERS = "proposers"  # how many processes asked the study for trials
_CONFIRMATION = "confirmation"  # ConfirmPlan
_CONFIRM_RUNS = "confirm_runs"  # earlier versions' retrainings
METRIC_NAMES = ("map", "patch_bytes")


# -- the study ---------------------------------------------------------------------------------
@dataclass(frozen=True)
class StudyMeta:
    """What a study records about itself at creation: enough to export without the spec.

    ``spec`` is the study file's path and ``spec_text`` its text (paths relative to that file's
    folder), both as at the study's last run: the study reads its spec from there when the file
    moved or is gone (studies of earlier versions recorded the path only). ``tolerance`` (mAP
    points) is that spec's ``search.tolerance``: the answer's distance to the full fine-tune
    (studies that did not record it: the default).
    """

    task: str
    classes: tuple[str, ...]
    model: str
    checkpoint: str | None
    base_sha256: str
    granularity: str
    kinds: tuple[str, ...]
    dtype: str
    full_bytes: int
    head_bytes: int
    artifacts: str
    spec: str
    seed: int
    train: dict[str, Any]
    sampler: str
    warm_start: str
    category_ids: tuple[int, ...] | None = None  # COCO ids in class order (None: older studies)
    tolerance: float = DEFAULT_TOLERANCE
    spec_text: str | None = None

    def to_json(self) -> dict[str, Any]:
        data = dict(self.__dict__)
        data["classes"], data["kinds"] = list(self.classes), list(self.kinds)
        if self.category_ids is not None:
            data["category_ids"] = list(self.category_ids)
        return {"format": FORMAT, **data}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> StudyMeta:
        known = cls.__dataclass_fields__
        fields = {k: v for k, v in data.items() if k in known}
        fields["classes"], fields["kinds"] = tuple(fields["classes"]), tuple(fields["kinds"])
        if fields.get("category_ids") is not None:
            fields["category_ids"] = tuple(fields["category_ids"])
        return cls(**fields)


def is_spotpatch_study(study) -> bool:
    """Whether a study (or a ``FrozenStudy`` from a storage listing) was made by spotpatch."""
    return META_KEY in study.user_attrs


def spotpatch_study_names(storage) -> list[str]:
    """The spotpatch studies of a storage, by name, without reading any trial."""
    return sorted(s.study_name for s in storage.get_all_studies() if is_spotpatch_study(s))


def study_meta(study) -> StudyMeta:
    """The metadata a study recorded at creation."""
    raw = study.user_attrs.get(META_KEY)
    if raw is None:
        raise UserError(f"study {study.study_name!r} was not made by spotpatch")
    return StudyMeta.from_json(raw)


def write_study_meta(study, meta: StudyMeta) -> None:
    """Record a new study's metadata and its objectives' names."""
    import optuna

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        study.set_metric_names(list(METRIC_NAMES))
    study.set_user_attr(META_KEY, meta.to_json())


# -- the warm start ----------------------------------------------------------------------------
@dataclass(frozen=True)
class RelaxationPhaseRecord:
    """One penalty level of the warm start: its config and per-gate kind probabilities."""

    lam: float | None
    sites: Mapping[str, str]
    patch_bytes: int | None
    probabilities: Mapping[str, Mapping[str, float]] = field(repr=False)

    def patched_probability(self, gate: str) -> float | None:
        """The probability that ``gate`` gets a kind other than ``shared`` (None: no gate)."""
        table = self.probabilities.get(gate)
        return None if table is None else 1.0 - float(table.get("shared", 0.0))


@dataclass(frozen=True)
class RelaxationRecord:
    """The warm start as a study stored it: its cost and one record per penalty level."""

    seconds: float
    steps: int
    phases: tuple[RelaxationPhaseRecord, ...]


def write_relaxation(study, result) -> None:
    """Store a :class:`~spotpatch.search.RelaxationResult` in its study."""
    study.set_user_attr(
        RELAXATION_KEY,
        {
            "seconds": round(result.seconds, 2),
            "steps": result.steps,
            "phases": [
                {
                    "lambda": p.lam,
                    "config": p.config.to_dict(),
                    "patch_bytes": p.patch_bytes,
                    "probabilities": p.probabilities,
                }
                for p in result.phases
            ],
        },
    )


def relaxation_record(study) -> RelaxationRecord | None:
    """The warm start a study stored, or None when it has none."""
    raw = study.user_attrs.get(RELAXATION_KEY)
    if not isinstance(raw, dict):
        return None
    phases = []
    for p in raw.get("phases") or []:
        if not isinstance(p, dict):
            continue
        lam = p.get("lambda")
        size = p.get("patch_bytes")
        phases.append(
            RelaxationPhaseRecord(
                lam=float(lam) if lam is not None else None,
                sites=dict(p.get("config") or {}),
                patch_bytes=int(size) if size is not None else None,
                probabilities=dict(p.get("probabilities") or {}),
            )
        )
    return RelaxationRecord(
        seconds=float(raw.get("seconds") or 0.0),
        steps=int(raw.get("steps") or 0),
        phases=tuple(phases),
    )


def warm_start_claim(study) -> Mapping[str, Any] | None:
    """The stamp ({host, pid, time}) of the process running the study's warm start, if any."""
    claim = study.user_attrs.get(_WARM_START_CLAIM)
    return claim if isinstance(claim, dict) else None


def write_warm_start_claim(study, stamp: Mapping[str, Any] | None) -> None:
    """Claim the study's warm start for a process (refreshed as it runs), or release it."""
    study.set_user_attr(_WARM_START_CLAIM, dict(stamp) if stamp is not None else None)


def claim_proposer(study) -> int:
    """This process's index among those that asked the study for trials (0, 1, ...); call it
    while holding the study's lock."""
    count = study.user_attrs.get(_PROPOSERS, 0)
    index = count if isinstance(count, int) and count >= 0 else 0
    study.set_user_attr(_PROPOSERS, index + 1)
    return index


def relaxation_trials(
    relaxation: RelaxationRecord | None, records: Sequence[TrialRecord]
) -> float | None:
    """The warm start's cost in trial-equivalents: its seconds over the mean seconds (training
    and scoring) of a completed trial. None without a warm start or a completed trial."""
    if relaxation is None or not relaxation.seconds:
        return None
    costs = [r.seconds for r in records if r.complete]
    mean = sum(costs) / len(costs) if costs else 0.0
    return relaxation.seconds / mean if mean > 0 else None


# -- the confirmation ---------------------------------------------------------------------------
#: What confirmation runs can be scored on (:attr:`ConfirmPlan.images`).
IMAGES = ("val", "val+test")


@dataclass(frozen=True)
class ConfirmPlan:
    """How a study confirms its answer (written when its confirmation starts).

    Attributes:
        seeds: paired seeds per config, for deciding and again for reporting.
        start: the trial whose config the walk starts from (None: the study's answer on the
            means of its runs).
        walk: whether a config that falls short on the deciding seeds gives way to the next
            larger front point (else the start is measured on fresh seeds as it is).
        images: what each confirmation run is scored on: ``val`` (the split the search
            scores on), or ``val+test`` (the mean of the val and test mAPs: twice the images,
            about half a paired Δ's variance; a study whose task has a test split).
        margin: how far inside the tolerance a config's deciding mean must lie to hold, in
            standard deviations of the Δ its reporting seeds are expected to show
            (:meth:`~spotpatch.search.Noise.decided`; a study file's ``confirm_margin``).
    """

    seeds: int
    start: int | None = None
    walk: bool = True
    images: str = "val"
    margin: float = DEFAULT_CONFIRM_MARGIN


def confirm_plan(study) -> ConfirmPlan | None:
    """The plan of a study's confirmation, or None when none started."""
    raw = study.user_attrs.get(_CONFIRMATION)
    if not isinstance(raw, dict):
        return None
    try:
        start = raw.get("start")
        images = raw.get("images", "val")  # plans stored before it was recorded: val
        if images not in IMAGES:
            return None
        margin = float(raw.get("margin", 1.0))  # plans stored before it was recorded: 1
        return ConfirmPlan(
            int(raw["seeds"]), int(start) if start is not None else None, bool(raw["walk"]),
            images, margin,
        )  # fmt: skip
    except (KeyError, TypeError, ValueError):
        return None


def write_confirm_plan(study, plan: ConfirmPlan) -> None:
    """Record how the study confirms its answer."""
    study.set_user_attr(
        _CONFIRMATION,
        {
            "seeds": plan.seeds,
            "start": plan.start,
            "walk": plan.walk,
            "images": plan.images,
            "margin": plan.margin,
        },
    )


@dataclass(frozen=True)
class ConfirmRun:
    """One retraining of a config with a seed no search trial used.

    ``stage``: ``decide`` (its seed helps choose the answer) or ``report`` (a fresh seed that
    measures the chosen answer). Earlier versions' ``spotpatch confirm`` runs are ``decide``.
    ``test_map``: its mAP on the task's test split (None: none recorded).
    """

    sites: Mapping[str, str]
    seed: int
    map: float
    patch_bytes: int
    stage: str = "decide"
    test_map: float | None = None


def confirm_runs(study) -> tuple[ConfirmRun, ...]:
    """Every retraining earlier versions' ``spotpatch confirm`` stored, in the order they ran
    (this version's are trials: :attr:`TrialRecord.confirmed`)."""
    raw = study.user_attrs.get(_CONFIRM_RUNS)
    runs = []
    for r in raw if isinstance(raw, list) else ():
        try:
            runs.append(
                ConfirmRun(dict(r["sites"]), int(r["seed"]), float(r["map"]), int(r["bytes"]))
            )
        except (KeyError, TypeError, ValueError):
            continue
    return tuple(runs)


def write_confirm_run(study, run: ConfirmRun) -> None:
    """Add a retraining as earlier versions' ``spotpatch confirm`` stored it (to make such
    studies in tests)."""
    raw = study.user_attrs.get(_CONFIRM_RUNS)
    runs = list(raw) if isinstance(raw, list) else []
    runs.append(
        {"sites": dict(run.sites), "seed": run.seed, "map": run.map, "bytes": run.patch_bytes}
    )
    study.set_user_attr(_CONFIRM_RUNS, runs)
