"""Noise-aware numbers: the selected patch and the full fine-tune retrained with other seeds.

One training run of a config moves by about a point of mAP with its seed, as much as the
tolerance a selection rule uses. ``confirm`` retrains the searched patch the rule picks (as the
report picks it: presets left out), the full fine-tune and any preset named, ``seeds`` times
each at the study's own budget, and stores every run in the study (a stopped confirm resumes).
The report then uses the mean of these runs.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

from spotpatch._errors import UserError
from spotpatch.search import (
    DEFAULT_RULE,
    ConfirmRun,
    confirm_runs,
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

    def to_json(self) -> dict:
        from dataclasses import asdict

        return {
            "study": self.study,
            "rule": self.rule,
            "seeds": list(self.seeds),
            "configs": [asdict(c) | {"mean": c.mean, "sd": c.sd} for c in self.configs],
            "versus_full": asdict(self.versus_full),
        }


def confirm_study(
    study_name: str,
    *,
    storage: str = DEFAULT_STORAGE,
    rule: str = DEFAULT_RULE,
    seeds: int = 3,
    presets: Sequence[str] = (),
    progress: bool | None = None,
    on_run: Callable[[str, int, float], None] | None = None,
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
    results = []
    for label, number, config in wanted:
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
        results.append(ConfirmedConfig(label, number, space.patch_bytes(config), tuple(maps)))
    runs = tuple(done.values())
    versus = confirmed(runs, chosen.config.to_dict(), space.preset("full").to_dict())
    assert versus is not None  # both were just retrained
    return Confirmation(study_name, str(parsed), seed_list, tuple(results), versus)
