"""Noise-aware numbers: the selected patch and the full fine-tune retrained with other seeds.

One training run of a config moves by about a point of mAP with its seed, as much as the
tolerance a selection rule uses. ``confirm`` retrains the searched patch the rule picks (as the
report picks it: presets left out), the full fine-tune and any preset named, ``seeds`` times
each at the study's own budget, and stores every run in the study (a stopped confirm resumes).
The report then uses the mean of these runs.

With ``walk``, a selected patch whose mean falls more than the rule's D points below the full
fine-tune's is not the end: the next larger searched front trial is retrained the same way, and
the next, until one holds within D (or the front is exhausted). The smallest searched patch
whose confirmed mAP is within D of the confirmed full fine-tune is then known, not guessed
from single runs.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

from spotpatch._errors import UserError
from spotpatch.search import (
    DEFAULT_RULE,
    ConfirmRun,
    confirm_runs,
    front_points,
    pareto_front,
    parse_rule,
    study_meta,
    trial_records,
    write_confirm_run,
)
from spotpatch.spaces import PRESETS
from spotpatch.studies._report import (
    Confirmed,
    confirmed,
    mean_sd,
    preset_runs,
    searched_trials,
    selected_searched,
)
from spotpatch.studies._setup import evaluator_of, recorded_spec
from spotpatch.studies._storage import (
    DEFAULT_STORAGE,
    check_run_folders,
    load_study,
    open_storage,
)

__all__ = ["CONFIRM_SEED", "ConfirmedConfig", "Confirmation", "confirm_study"]

#: Retrainings use seeds ``CONFIRM_SEED + i``: far from the trials' (the spec's seed plus the
#: trial number), so no retraining repeats a trial.
CONFIRM_SEED = 1_000_000


@dataclass(frozen=True)
class ConfirmedConfig:
    """One config retrained: what it is and the val mAP of each retraining.

    Attributes:
        label: ``selected``, ``full`` or a preset's name.
        trial: the trial it comes from (None: a preset the study did not run).
        patch_bytes: its patch payload.
        maps: val mAP per seed, in seed order.
    """

    label: str
    trial: int | None
    patch_bytes: int
    maps: tuple[float, ...]

    @property
    def mean(self) -> float:
        return mean_sd(self.maps)[0]

    @property
    def sd(self) -> float:
        return mean_sd(self.maps)[1]


@dataclass(frozen=True)
class Confirmation:
    """What ``confirm`` measured for one study."""

    study: str
    rule: str
    seeds: tuple[int, ...]
    configs: tuple[ConfirmedConfig, ...]
    versus_full: Confirmed
    #: Whether it walked; then the smallest walked trial confirmed within D points (None: none
    #: was), and its difference to the full fine-tune.
    walk: bool = False
    held: int | None = None
    held_versus_full: Confirmed | None = None

    def to_json(self) -> dict:
        from dataclasses import asdict

        out = {
            "study": self.study,
            "rule": self.rule,
            "seeds": list(self.seeds),
            "configs": [asdict(c) | {"mean": c.mean, "sd": c.sd} for c in self.configs],
            "versus_full": asdict(self.versus_full),
        }
        if self.walk:
            out["held"] = self.held
            out["held_versus_full"] = (
                asdict(self.held_versus_full) if self.held_versus_full else None
            )
        return out


def confirm_study(
    study_name: str,
    *,
    storage: str = DEFAULT_STORAGE,
    rule: str = DEFAULT_RULE,
    seeds: int = 3,
    presets: Sequence[str] = (),
    progress: bool | None = None,
    on_run: Callable[[str, int, float], None] | None = None,
    walk: bool = False,
) -> Confirmation:
    """Retrain the selected searched patch, the full fine-tune and ``presets`` with ``seeds``
    new seeds each; runs the study already stored are not repeated.

    Args:
        study_name: the study.
        storage: its Optuna storage URL.
        rule: picks the searched patch (as ``spotpatch report`` does).
        seeds: retrainings per config.
        presets: more fixed recipes to retrain.
        progress: progress bars while training (None: only on a terminal).
        on_run: called with (label, seed, mAP) after each new retraining.
        walk: while the last patch retrained falls more than the rule's D points below the
            full fine-tune, retrain the next larger searched front trial (label
            ``candidate``); needs a ``within`` or ``within-full`` rule.

    Raises:
        UserError: an unknown study or preset, a bad rule, ``seeds`` < 1, no searched trial
            the rule can pick, a study file that is gone, or a storage that cannot be written.
    """
    if seeds < 1:
        raise UserError(f"--seeds must be at least 1, got {seeds}")
    unknown = [p for p in presets if p not in PRESETS]
    if unknown:
        raise UserError(f"unknown preset {unknown[0]!r} (expected {', '.join(PRESETS)})")
    parsed = parse_rule(rule)
    if walk and parsed.kind not in ("within", "within-full"):
        raise UserError(f"--walk needs a within=D or within-full=D rule, got {parsed}")
    study = load_study(study_name, open_storage(storage, existing=True))
    check_run_folders(storage, None)  # retrainings are stored with the study
    meta = study_meta(study)
    records = trial_records(study)
    chosen, why = selected_searched(records, meta.full_bytes, parsed)
    if chosen is None:
        raise UserError(f"study {study_name!r}: nothing to confirm ({why})")
    try:
        spec = recorded_spec(meta)
    except UserError as e:
        raise UserError(f"study {study_name!r}: {e}; confirm retrains from it") from None
    evaluator = evaluator_of(spec, progress=progress)
    space = evaluator.space
    ran = preset_runs(records)
    wanted = [("selected", chosen.number, chosen.config)]
    for name in dict.fromkeys(("full", *presets)):
        trial = ran.get(name)
        wanted.append((name, trial.number if trial else None, space.preset(name)))
    seed_list = tuple(CONFIRM_SEED + i for i in range(seeds))
    done = {(tuple(sorted(r.sites.items())), r.seed): r for r in confirm_runs(study)}

    def retrain(label: str, number: int | None, config) -> ConfirmedConfig:
        key = tuple(sorted(config.to_dict().items()))
        maps = []
        for seed in seed_list:
            run = done.get((key, seed))
            if run is None:
                result = evaluator.evaluate(config, seed=seed)
                run = ConfirmRun(config.to_dict(), seed, result.map, result.patch_bytes)
                write_confirm_run(study, run)
                done[(key, seed)] = run
                if on_run is not None:
                    on_run(label, seed, run.map)
            maps.append(run.map)
        return ConfirmedConfig(label, number, space.patch_bytes(config), tuple(maps))

    def versus_full(config) -> Confirmed:
        versus = confirmed(tuple(done.values()), config.to_dict(), space.preset("full").to_dict())
        assert versus is not None  # both were retrained
        return versus

    results = [retrain(*w) for w in wanted]
    versus = versus_full(chosen.config)
    held = held_versus = None
    if walk:
        tolerance = parsed.value / 100.0
        walked, last = chosen, versus
        front = pareto_front(front_points(searched_trials(records)))
        by_number = {r.number: r for r in records}
        larger = iter(p for p in front if p.bytes > chosen.patch_bytes)
        while last.delta < -tolerance - 1e-12:
            point = next(larger, None)
            if point is None:
                break
            walked = by_number[point.number]
            results.append(retrain("candidate", walked.number, walked.config))
            last = versus_full(walked.config)
        if last.delta >= -tolerance - 1e-12:
            held, held_versus = walked.number, last
    return Confirmation(
        study_name, str(parsed), seed_list, tuple(results), versus, walk, held, held_versus
    )
