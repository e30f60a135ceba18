"""Confirming a study's answer: chosen on some seeds, reported on others.

One run of a config moves by about a point of mAP with its seed, the size of the tolerance the
answer is chosen with; the smallest patch within the tolerance on the search's runs is then
partly the luckiest. Confirmation retrains, past the study's total, with seeds no trial used
(:mod:`._seeds`), every config in a pair with the full fine-tune (the same seed for both: the
same batches, the same class-head initialization), so that the seed's share of the noise
cancels in the difference:

1. **decide**: the answer on the search's means (or the plan's start) and the full fine-tune
   train on ``seeds`` deciding seeds. A config holds when its mean paired Δ, less a margin, is
   within the tolerance: the margin is the standard deviation of the Δ the ``seeds`` reporting
   pairs are expected to show, the deciding mean's noise and theirs together, times the plan's
   ``margin`` (:data:`~spotpatch.search.DEFAULT_CONFIRM_MARGIN` by default), so that the config
   holds by more than the noise of the number that will be reported. The spread comes from a
   pool (:class:`Noise`), not from the config's own three pairs alone: nine times in
   ten, three values put a spread between a quarter of its size and 1.7 times it. While the
   tolerance's edge lies within the margin of the mean, another pair of seeds is trained
   (racing), up to twice ``seeds``: it narrows the deciding mean's share of the margin, never
   the reporting seeds'. A config that does not hold gives way to
   the next larger point of the study's front (presets included), trained the same way; past the
   front's last point, the best config the search's runs put within the tolerance but off the
   front (if one is larger than every point walked), then the full fine-tune itself, which is
   within any tolerance of itself (it needs no deciding runs of its own). The first config that
   holds is the answer.
2. **report**: the answer and the full fine-tune train on ``seeds`` fresh seeds, paired. Their
   mean paired Δ, with its spread and interval, is the number the study reports, marked held
   or not; no decision is taken on it. A miss is reported as a miss: walking on would make the
   fresh seeds deciding ones, and the number reported biased again.

Every run is scored on the plan's images (:func:`scored`): val, or, where the task has a test
split, the mean of its val and test mAPs, whose paired Δ is about half as noisy.

Everything is read from the study's records on every call (:func:`confirmation`): a stopped
confirmation resumes where it was, without retraining a stored run, on any backend, and
parallel workers take the runs still needed in order. Imports only from ``search``'s own
record, units, Pareto and seeds modules.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from spotpatch.search._pareto import FrontPoint
from spotpatch.search._record import TrialRecord, config_key
from spotpatch.search._recovery import MAX_ATTEMPTS
from spotpatch.search._seeds import decide_seeds, report_seeds
from spotpatch.search._study_record import ConfirmPlan, ConfirmRun
from spotpatch.search._units import from_points, mean_sd, reaches, to_points, within

__all__ = [
    "INTERVAL",
    "ConfirmJob",
    "Noise",
    "Paired",
    "WalkStep",
    "Confirmation",
    "confirmation",
    "confirm_runs_of",
    "free_job",
    "paired",
    "plan_with",
    "walked_out_text",
]

#: The two-sided coverage of the interval reported around a paired Δ.
INTERVAL = 0.9


@dataclass(frozen=True)
class ConfirmJob:
    """One run the confirmation still needs: a config, a seed and the stage it serves."""

    sites: Mapping[str, str]
    seed: int
    stage: str

    @property
    def key(self) -> tuple:
        return (config_key(self.sites), self.seed, self.stage)


@dataclass(frozen=True)
class Paired:
    """A config against the full fine-tune on the same seeds (mAP in [0, 1]).

    Attributes:
        seeds: pairs (one run of each per seed).
        map: the config's mean mAP; ``map_sd`` its standard deviation over seeds.
        full_map: the full fine-tune's mean mAP; ``full_sd`` likewise.
        delta: the mean paired difference ``map - full_map``.
        delta_sd: the standard error of ``delta``: the standard deviation of one pair's
            difference over ``sqrt(seeds)`` (0 for one pair).
        low, high: the :data:`INTERVAL` t-interval of ``delta`` (``delta`` itself for one pair).
        margin: how far inside the tolerance ``delta`` must lie to hold surely: ``delta_sd``,
            or on deciding seeds the standard deviation of the mean Δ the reporting seeds are
            expected to show (:meth:`Noise.decided`).
    """

    seeds: int
    map: float
    map_sd: float
    full_map: float
    full_sd: float
    delta: float
    delta_sd: float
    low: float
    high: float
    margin: float | None = None

    def holds(self, tolerance: float) -> bool:
        """Whether the mean paired Δ is within ``tolerance`` mAP points of the full fine-tune."""
        return reaches(self.delta, -from_points(tolerance))

    @property
    def _margin(self) -> float:
        return self.delta_sd if self.margin is None else self.margin

    def surely_holds(self, tolerance: float) -> bool:
        """Whether the mean paired Δ less its :attr:`margin` is within ``tolerance`` points:
        the deciding seeds' rule, so that a patch holds by more than the noise of its deciding
        seeds and of the reporting seeds to come."""
        return reaches(self.delta - self._margin, -from_points(tolerance))

    def unsure(self, tolerance: float) -> bool:
        """Whether the tolerance's edge lies within one :attr:`margin` of the mean paired Δ:
        another pair of seeds may change the decision."""
        edge = -from_points(tolerance)
        return not self.surely_holds(tolerance) and reaches(self.delta + self._margin, edge)

    def to_json(self) -> dict:
        return {
            "seeds": self.seeds,
            "map_mean": self.map,
            "map_sd": self.map_sd,
            "full_map_mean": self.full_map,
            "full_map_sd": self.full_sd,
            "delta": self.delta,
            "delta_sd": self.delta_sd,
            "delta_interval": [self.low, self.high],
        }

    def decision_json(self) -> dict:
        """:meth:`to_json` with the :attr:`margin` the decision used."""
        return {**self.to_json(), "margin": self._margin}

    def text(self) -> str:
        """``−0.4 ± 0.3 (3 paired seeds)``, in mAP points."""
        s = "s" if self.seeds != 1 else ""
        return (
            f"{to_points(self.delta):+.1f} ± {to_points(self.delta_sd):.1f} "
            f"({self.seeds} paired seed{s})"
        )


def paired(mine: Sequence[float], full: Sequence[float]) -> Paired:
    """Two configs' runs on the same seeds, in seed order, summed up as a :class:`Paired`.

    Example:
        >>> p = paired([0.70, 0.72, 0.71], [0.71, 0.72, 0.73])
        >>> round(to_points(p.delta), 2), round(to_points(p.delta_sd), 2)
        (-1.0, 0.58)
    """
    n = len(mine)
    delta, sd = mean_sd(_diffs(mine, full))
    se = sd / math.sqrt(n)
    half = _t(n - 1) * se if n > 1 else 0.0
    (m, m_sd), (f, f_sd) = mean_sd(mine), mean_sd(full)
    return Paired(n, m, m_sd, f, f_sd, delta, se, delta - half, delta + half)


@dataclass(frozen=True)
class Noise:
    """The spread of one paired Δ, pooled over everything a study has measured it on.

    The standard deviation of three pairs' differences is itself uncertain by about half its
    size (nine times in ten between a quarter and 1.7 times the true one), and a decision taken
    on an unluckily small one holds by less than it seems. So the deciding rule uses a pooled
    spread: the sample variances of every config's deciding pairs walked so far and of the
    search's repeated configs (each config's runs about their mean, one seed apart), weighted by
    their degrees of freedom. A config's spread between single runs stands in for a pair's:
    measured at a study's 150 steps, a paired Δ's standard deviation is 0.66-1.18 times a single
    run's (``benchmarks/paired_noise.py``). Reporting runs never enter it: fresh seeds decide
    nothing. ``squares``: the summed squared deviations; ``df``: their degrees of freedom.
    """

    squares: float = 0.0
    df: int = 0

    @classmethod
    def of_search(cls, records: Sequence[TrialRecord], images: str = "val") -> Noise:
        """The spread of the search's repeated configs in ``records``, scored on ``images``
        (:func:`scored`; runs without that score are left out)."""
        runs: dict[frozenset, list[float]] = {}
        for r in records:
            if r.complete and (value := scored(r.map, r.test_map, images)) is not None:
                runs.setdefault(r.key, []).append(value)
        noise = cls()
        for maps in runs.values():
            noise = noise.plus(maps)
        return noise

    def plus(self, values: Sequence[float]) -> Noise:
        """This spread pooled with that of ``values`` (one config's runs, or its paired Δs)."""
        if len(values) < 2:
            return self
        sd = mean_sd(values)[1]
        return Noise(self.squares + (len(values) - 1) * sd**2, self.df + len(values) - 1)

    def decided(
        self, mine: Sequence[float], full: Sequence[float], fresh: int, scale: float = 1.0
    ) -> Paired:
        """A config's deciding pairs (``mine`` against ``full``, in seed order) as a
        :class:`Paired` whose standard error and interval come from the spread pooled with
        theirs, and whose margin is ``scale`` times the standard deviation of the mean Δ that
        ``fresh`` reporting pairs are expected to show given this one: ``scale * sd *
        sqrt(1/n + 1/fresh)``, the deciding mean's own noise and the reporting seeds' together.
        More deciding pairs narrow only the first: a config holds when its reported Δ is
        expected within the tolerance by more than ``scale`` times that Δ's noise, however
        many pairs decided it."""
        own = paired(mine, full)
        pooled = self.plus(_diffs(mine, full))
        if pooled.df == 0:
            return own
        sd = math.sqrt(pooled.squares / pooled.df)
        se = sd / math.sqrt(own.seeds)
        half = _t(pooled.df) * se
        margin = scale * sd * math.sqrt(1 / own.seeds + 1 / fresh)
        return dataclasses.replace(
            own, delta_sd=se, low=own.delta - half, high=own.delta + half, margin=margin
        )


def scored(val: float | None, test: float | None, images: str) -> float | None:
    """A run's score on ``images`` (:data:`~spotpatch.search._study_record.IMAGES`): its val
    mAP, or the mean of its val and test mAPs (None where it has no test score)."""
    if images == "val" or val is None:
        return val
    return None if test is None else (val + test) / 2


def _diffs(mine: Sequence[float], full: Sequence[float]) -> list[float]:
    return [a - b for a, b in zip(mine, full, strict=True)]


def _t(df: int) -> float:
    """The :data:`INTERVAL` two-sided t quantile at ``df`` degrees of freedom."""
    from scipy.stats import t

    return float(t.ppf(0.5 + INTERVAL / 2, df))


@dataclass(frozen=True)
class WalkStep:
    """A config trained on the deciding seeds: its trial, bytes and its pairs against the full
    fine-tune (None while some are not trained yet)."""

    trial: int
    patch_bytes: int
    versus: Paired | None


@dataclass(frozen=True)
class Confirmation:
    """Where a study's confirmation stands, read from its runs.

    Attributes:
        plan: the plan it follows.
        tolerance: mAP points the answer may lose against the full fine-tune.
        walk: the configs trained on the deciding seeds, in the order walked.
        trial: the config it settled on (its first trial; None while deciding). With
            ``plan.walk`` it is the first walked config that held on the deciding seeds, or the
            full fine-tune where none smaller did (``walked_out``).
        reported: the settled config against the full fine-tune on the fresh seeds (None
            until every pair is trained).
        state: ``deciding``, ``reporting``, ``done`` or ``failed``.
        note: what went wrong (``failed``), or that the walk ran out of front.
        needed: the runs still to train, in the order they are wanted.
        walked_out: no config smaller than the full fine-tune held on the deciding seeds.
    """

    plan: ConfirmPlan
    tolerance: float
    walk: tuple[WalkStep, ...]
    trial: int | None
    reported: Paired | None
    state: str
    note: str | None
    needed: tuple[ConfirmJob, ...]
    walked_out: bool = False

    @property
    def holds(self) -> bool | None:
        """Whether the fresh seeds' paired Δ is within the tolerance (None until measured)."""
        return None if self.reported is None else self.reported.holds(self.tolerance)

    @property
    def done(self) -> bool:
        return self.state in ("done", "failed")

    def delta_text(self) -> str | None:
        """The confirmed Δ as every command prints it: ``−0.4 ± 0.3 (3 paired seeds) on
        val+test: holds`` (or ``misses``; ``on ...`` where not scored on val alone), or
        :func:`walked_out_text` where the walk reached the full fine-tune, whose Δ against
        itself says nothing; None until the fresh seeds are measured."""
        if self.walked_out:
            return walked_out_text(len(self.walk))
        if self.reported is None:
            return None
        on = "" if self.plan.images == "val" else f" on {self.plan.images}"
        return f"{self.reported.text()}{on}: {'holds' if self.holds else 'misses'}"

    def to_json(self) -> dict:
        return {
            "seeds": self.plan.seeds,
            "images": self.plan.images,
            "margin": self.plan.margin,
            "walk": [
                {
                    "trial": s.trial,
                    "patch_bytes": s.patch_bytes,
                    "decide": None if s.versus is None else s.versus.decision_json(),
                }
                for s in self.walk
            ],
            "trial": self.trial,
            "state": self.state,
            "note": self.note,
            "walked_out": self.walked_out,
            "tolerance": self.tolerance,
            "reported": None if self.reported is None else self.reported.to_json(),
            "holds": self.holds,
        }


def walked_out_text(walked: int) -> str:
    """What a study whose walk reached the full fine-tune says in place of its Δ (``walked``:
    the configs tried before it)."""
    return f"none smaller held ({walked} walked): the full fine-tune"


def confirm_runs_of(records: Sequence[TrialRecord], legacy: Sequence[ConfirmRun] = ()):
    """Every confirmation run of a study: its confirmation trials and the retrainings earlier
    versions' ``spotpatch confirm`` stored (deciding runs)."""
    runs = list(legacy)
    for r in records:
        if r.confirmed:
            runs.append(
                ConfirmRun(dict(r.sites or {}), r.confirm_seed, r.map, r.patch_bytes,
                           r.confirm_stage, r.test_map)
            )  # fmt: skip
    return runs


def confirmation(
    front: Sequence[FrontPoint],
    start: FrontPoint,
    full: FrontPoint,
    sites_of: Mapping[int, Mapping[str, str]],
    records: Sequence[TrialRecord],
    plan: ConfirmPlan,
    *,
    seed: int,
    tolerance: float,
    legacy: Sequence[ConfirmRun] = (),
    points: Sequence[FrontPoint] = (),
) -> Confirmation:
    """Where the confirmation of a study stands, and the runs it still needs.

    Args:
        front: the study's Pareto front (every trial, at the means of its runs).
        start: where the walk starts (the answer on the search's means, or the plan's start).
        full: the full fine-tune's point.
        sites_of: the config of each point's trial.
        records: the study's trials (its confirmation runs among them; failed ones count
            toward a run's attempts).
        plan: seeds per config, whether to walk.
        seed: the study's seed (:func:`~spotpatch.search.decide_seeds`).
        tolerance: mAP points.
        legacy: earlier versions' retrainings (deciding runs).
        points: every trial at the means of its runs (the front among them): past the front,
            the walk takes the best of those off it before the full fine-tune
            (:func:`_off_front`).
    """
    runs = {
        (config_key(r.sites), r.seed, r.stage): value
        for r in confirm_runs_of(records, legacy)
        if (value := scored(r.map, r.test_map, plan.images)) is not None
    }
    failed: dict[tuple, list[str]] = {}
    for r in records:
        if r.confirm_stage is not None and r.error is not None and not r.confirmed:
            key = (config_key(r.sites or {}), r.confirm_seed, r.confirm_stage)
            failed.setdefault(key, []).append(r.error)
    decide = decide_seeds(seed, 2 * plan.seeds)
    report = report_seeds(seed, plan.seeds)
    needed: list[ConfirmJob] = []

    def missing(point: FrontPoint, seeds, stage: str) -> list[ConfirmJob]:
        jobs = [ConfirmJob(sites_of[point.number], s, stage) for s in seeds]
        return [j for j in jobs if j.key not in runs]

    def maps(point: FrontPoint, seeds, stage: str) -> tuple[list[float], list[float]]:
        mine, theirs = config_key(sites_of[point.number]), config_key(sites_of[full.number])
        return [runs[(mine, s, stage)] for s in seeds], [runs[(theirs, s, stage)] for s in seeds]

    noise = Noise.of_search(records, plan.images)

    candidates = [start]
    if plan.walk:
        candidates += [p for p in front if p.bytes > start.bytes and p.number != full.number]
        if start.number != full.number:
            candidates += _off_front(candidates, points, full, tolerance)
            candidates.append(full)
    walk: list[WalkStep] = []
    settled = None
    for point in candidates:
        if not plan.walk or point.number == full.number:
            settled = point  # the full fine-tune is within any tolerance of itself
            break
        versus, jobs = None, []
        for count in range(plan.seeds, 2 * plan.seeds + 1):  # racing: a pair more while unsure
            seeds = decide[:count]
            jobs = _unique(missing(point, seeds, "decide") + missing(full, seeds, "decide"))
            if jobs:
                break
            pair = maps(point, seeds, "decide")
            versus = noise.decided(*pair, fresh=plan.seeds, scale=plan.margin)
            if not versus.unsure(tolerance):
                break
        if jobs:
            walk.append(WalkStep(point.number, point.bytes, None))
            needed += jobs
            break
        noise = noise.plus(_diffs(*pair))  # the configs walked next pool this one's pairs
        walk.append(WalkStep(point.number, point.bytes, versus))
        if versus.surely_holds(tolerance):
            settled = point
            break
    needed += missing(full, report, "report")
    reported = None
    if settled is not None:
        needed += missing(settled, report, "report")
        if not missing(settled, report, "report") and not missing(full, report, "report"):
            reported = paired(*maps(settled, report, "report"))
    needed = _unique(needed)
    walked_out = settled is not None and plan.walk and settled.number == full.number
    walked_out = walked_out and start.number != full.number
    note = None
    if walked_out:
        note = (
            f"no patch smaller than the full fine-tune held within {tolerance:g} points on the "
            f"deciding seeds ({len(walk)} walked): the answer is the full fine-tune"
        )
    for job in needed:
        errors = failed.get(job.key, [])
        if len(errors) >= MAX_ATTEMPTS:
            note = f"a {job.stage} run (seed {job.seed}) failed {len(errors)} times: {errors[-1]}"
            return Confirmation(plan, tolerance, tuple(walk), settled and settled.number,
                                reported, "failed", note, (), walked_out)  # fmt: skip
    if settled is None:
        state = "deciding"
    elif reported is None:
        state = "reporting"
    else:
        state = "done"
    return Confirmation(
        plan,
        tolerance,
        tuple(walk),
        None if settled is None else settled.number,
        reported,
        state,
        note,
        tuple(needed),
        walked_out,
    )


def _off_front(
    walked: Sequence[FrontPoint],
    points: Sequence[FrontPoint],
    full: FrontPoint,
    tolerance: float,
) -> list[FrontPoint]:
    """What the walk takes past the front's last point, before the full fine-tune: the
    best-scoring point larger than every point walked that the search put within ``tolerance``
    (mAP points) of the full fine-tune, if any. One run or two put a config off the front by a
    hair as easily as on it; one step more costs a few runs, where the full fine-tune as the
    answer costs every byte."""
    top = max(p.bytes for p in walked)
    off = [p for p in points if top < p.bytes < full.bytes and within(p.map, full.map, tolerance)]
    return [max(off, key=lambda p: (p.map, -p.bytes))] if off else []


def plan_with(
    stored: ConfirmPlan | None, seeds: int, images: str, margin: float
) -> ConfirmPlan | None:
    """The plan a study confirms by: the one it stored, at ``seeds`` seeds and ``margin`` when
    ``seeds`` > 0 (a study file's ``confirm_seeds`` and ``confirm_margin``); a new one at
    ``seeds``, scored on ``images``, when none is stored; None when none is stored and
    ``seeds`` is 0. A stored plan keeps its images: its runs were scored on them."""
    if stored is None:
        return ConfirmPlan(seeds, images=images, margin=margin) if seeds > 0 else None
    if seeds == 0:
        return stored
    return dataclasses.replace(stored, seeds=seeds, margin=margin)


def free_job(state: Confirmation, records: Sequence[TrialRecord]) -> ConfirmJob | None:
    """The first run ``state`` needs that no trial of ``records`` runs or waits to run (None:
    every run it needs is in flight)."""
    import optuna

    S = optuna.trial.TrialState
    busy = {
        (config_key(r.sites or {}), r.confirm_seed, r.confirm_stage)
        for r in records
        if r.confirm_stage is not None and r.state in (S.RUNNING, S.WAITING)
    }
    return next((j for j in state.needed if j.key not in busy), None)


def _unique(jobs: Sequence[ConfirmJob]) -> list[ConfirmJob]:
    seen, out = set(), []
    for job in jobs:
        if job.key not in seen:
            seen.add(job.key)
            out.append(job)
    return out
