"""Fixed configs on a finished study's confirmation seeds, each paired with the full fine-tune.

Run: ``.venv/bin/python benchmarks/fixed_configs.py --runs runs/seed0 --studies fine-grained
tiny-crowd --configs lora4:0.3 lora8:1 preset:lora4 [--workers 2]
[--record benchmarks/results/fixed_configs.jsonl]``

For a ``reproduce.py`` output whose studies are confirmed, trains each config on the seeds the
study's confirmation trained its full fine-tune on (the same seed: the same batches and class
head initialization as that stored run), scores it as the confirmation does (val, or val and
test together), and compares it pair by pair with the stored full fine-tune runs:

- on the **deciding** seeds, with the study's own rule (its spread pooled over the search's
  repeated configs, its margin and tolerance): would the walk have taken this config;
- on the **reporting** seeds (fresh: no decision of the study used them): what Δ it would have
  reported.

Nothing is written to the study. A config is ``loraR:T`` (a rank-R delta on every layer whose
own weights take more than T % of the full detector's bytes, every smaller layer, depthwise
layer and the class head trained whole) or ``preset:NAME`` (one of the presets).
"""

from __future__ import annotations

import argparse
import json
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import torch

from spotpatch.search import Noise, confirm_plan, decide_seeds, paired, report_seeds, trial_records
from spotpatch.search._confirmation import confirm_runs_of, scored
from spotpatch.search._record import config_key
from spotpatch.spaces import PatchConfig, parse_kind
from spotpatch.studies import evaluator_of, load_spec, load_study, open_storage

_EVALUATORS: dict = {}


def config_of(space, name: str) -> PatchConfig:
    """The config ``name`` stands for in ``space`` (see the module's docstring)."""
    if name.startswith("preset:"):
        return space.preset(name.split(":", 1)[1])
    rank, threshold = name.removeprefix("lora").split(":")
    lora, full = parse_kind(f"lora{rank}"), parse_kind("full")
    kinds = {}
    for site in space.sites:
        big = 100 * space.site_bytes(site, full) / space.full_bytes() > float(threshold)
        fits = str(lora) in {str(k) for k in space.allowed(site, (str(lora), "full"))}
        kinds[site.name] = lora if big and fits else full
    return PatchConfig(kinds)


def _one_thread() -> None:
    torch.set_num_threads(1)


def _train(spec_path: str, config: str, seed: int, images: str) -> tuple[float, float]:
    """One run of ``config`` with ``seed``: (its score on ``images``, its bytes share)."""
    if spec_path not in _EVALUATORS:
        _EVALUATORS[spec_path] = evaluator_of(load_spec(spec_path), progress=False)
    evaluator = _EVALUATORS[spec_path]
    space = evaluator.space
    cfg = config_of(space, config)
    result = evaluator.evaluate(cfg, seed=seed)
    return scored(result.map, result.test_map, images), space.patch_bytes(cfg) / space.full_bytes()


def _stored(records, images: str) -> dict[tuple, float]:
    """The study's confirmation runs scored on ``images``, by (config key, seed, stage)."""
    runs = {}
    for r in confirm_runs_of(records):
        if (value := scored(r.map, r.test_map, images)) is not None:
            runs[(config_key(r.sites), r.seed, r.stage)] = value
    return runs


def _walk_noise(records, stored, full_key, images: str, full: dict[int, float]) -> Noise:
    """The spread the study's walk decided its last step with: the search's repeated configs
    pooled with the deciding pairs of every config it walked."""
    walked: dict = {}
    for (key, seed, stage), value in stored.items():
        if stage == "decide" and key != full_key and seed in full:
            walked.setdefault(key, []).append(value - full[seed])
    noise = Noise.of_search(records, images)
    for diffs in walked.values():
        noise = noise.plus(diffs)  # a config walked on one pair adds nothing
    return noise


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=Path, required=True, help="a reproduce.py output")
    parser.add_argument("--studies", nargs="+", required=True)
    parser.add_argument("--configs", nargs="+", required=True)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--record", type=Path, help="append one JSON line per result")
    args = parser.parse_args(argv)

    storage = open_storage(f"sqlite:///{args.runs / 'spotpatch.db'}")
    jobs, cases = [], []
    for name in args.studies:
        spec_path = str(args.runs / "studies" / f"{name}.toml")
        spec = load_spec(spec_path)
        study = load_study(name, storage)
        plan = confirm_plan(study)
        records = trial_records(study)
        space = evaluator_of(spec, progress=False).space
        full_key = config_key(space.preset("full").to_dict())
        stored = _stored(records, plan.images)
        decide, report = (
            {s: stored[(full_key, s, stage)] for s in seeds if (full_key, s, stage) in stored}
            for stage, seeds in (
                ("decide", decide_seeds(spec.seed, 2 * plan.seeds)),
                ("report", report_seeds(spec.seed, plan.seeds)),
            )
        )
        noise = _walk_noise(records, stored, full_key, plan.images, decide)
        for config in args.configs:
            case = dict(study=name, config=config, spec=spec_path, plan=plan, noise=noise,
                        tolerance=spec.search.tolerance, decide=decide, report=report)  # fmt: skip
            cases.append(case)
            for stage in ("decide", "report"):
                jobs += [(len(cases) - 1, stage, s) for s in case[stage]]

    start = time.perf_counter()
    with ProcessPoolExecutor(args.workers, initializer=_one_thread) as pool:
        futures = {
            (i, stage, seed): pool.submit(
                _train, cases[i]["spec"], cases[i]["config"], seed, cases[i]["plan"].images
            )
            for i, stage, seed in jobs
        }
        results = {job: future.result() for job, future in futures.items()}

    for i, case in enumerate(cases):
        line = {"runs": str(args.runs), "study": case["study"], "config": case["config"]}
        for stage in ("decide", "report"):
            seeds = sorted(case[stage])
            mine = [results[(i, stage, s)][0] for s in seeds]
            full = [case[stage][s] for s in seeds]
            line["bytes_pct"] = 100 * results[(i, stage, seeds[0])][1]
            both = paired(mine, full)
            line[stage] = {
                "seeds": seeds,
                "map": mine,
                "full_map": full,
                "delta": 100 * both.delta,
                "delta_se": 100 * both.delta_sd,
            }
            if stage == "decide":  # racing: a pair more while unsure, as the walk does
                for count in range(min(case["plan"].seeds, len(seeds)), len(seeds) + 1):
                    versus = case["noise"].decided(mine[:count], full[:count],
                                                   fresh=case["plan"].seeds,
                                                   scale=case["plan"].margin)  # fmt: skip
                    if not versus.unsure(case["tolerance"]):
                        break
                line["decide"]["used"] = count
                line["decide"]["decided_delta"] = 100 * versus.delta
                line["decide"]["margin"] = 100 * versus.margin
                line["decide"]["holds"] = versus.surely_holds(case["tolerance"])
        d, r = line["decide"], line["report"]
        print(
            f"{case['study']:15s} {case['config']:13s} {line['bytes_pct']:5.1f} %  deciding "
            f"{d['decided_delta']:+.2f} on {d['used']} of {len(d['seeds'])} (margin "
            f"{d['margin']:.2f}: {'holds' if d['holds'] else 'gives way'})  fresh "
            f"{r['delta']:+.2f} ± {r['delta_se']:.2f} ({len(r['seeds'])})"
        )
        if args.record:
            with args.record.open("a") as f:
                f.write(json.dumps(line) + "\n")
    print(f"{len(jobs)} runs in {time.perf_counter() - start:.0f} s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
