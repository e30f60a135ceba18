"""Trial time with and without the prefix cache, per preset and for configs a search produced.

Run: ``.venv/bin/python benchmarks/prefix_cache.py [--bench DIR] [--task glyphs] [--scale 0.25]
[--steps 40] [--batch-size 16] [--storage URL --study glyphs | --seed 0] [--rounds 2]
[--threads 1]``

One process, one task, the shipped spotpatch-tiny base. Every config trains as a trial
(``PatchEvaluator.evaluate``: training, then COCO mAP on val) once uncached
(``prefix_cache = "off"``) and once cached, round-robin so that machine noise hits both alike.
The first round's cached trials build the caches they need (their time includes it, as in a
study); later rounds reuse them. A config whose first patched site is in the backbone's first
block has nothing to cache and computes the same way in both modes: it is timed uncached only.
Wall and CPU seconds are both recorded (on a shared machine the CPU seconds of a one-thread
run are the steadier measure). The configs: the six presets, then the first ten searched
trials (warm start or sampler; presets and repeats left out) of a finished study
(``--storage``/``--study``), else ten configs sampled from the block space with ``--seed``.
Cached and uncached trials of a config must give the same mAP; the script says where not.
Records go to ``benchmarks/results/prefix_cache.jsonl`` (one line per trial) and
``prefix_cache.json`` (the table).
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import tempfile
import time
from pathlib import Path

import torch

from spotpatch.evaluators import PatchEvaluator, TrainSettings, load_base
from spotpatch.evaluators._prefix import cut_point, cut_points, prefix_cache_bytes
from spotpatch.spaces import PRESETS, PatchConfig
from spotpatch.studies import evaluator_of, load_spec

RESULTS = Path(__file__).parent / "results"


def _searched(storage: str, study: str, count: int) -> list[tuple[str, PatchConfig]]:
    import optuna

    from spotpatch.search import trial_records

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    records = trial_records(optuna.load_study(study_name=study, storage=storage))
    picked: list[tuple[str, PatchConfig]] = []
    for r in records:
        if r.sites is None or r.source == "preset" or r.duplicate_of is not None:
            continue
        config = PatchConfig.from_dict(r.sites)
        if r.state.name == "COMPLETE" and config not in [c for _, c in picked]:
            picked.append((f"{study} #{r.number} ({r.source})", config))
    return picked[:count]


def _sampled(space, seed: int, count: int) -> list[tuple[str, PatchConfig]]:
    rng = random.Random(seed)
    groups = list(space.groups())
    return [
        (
            f"sampled {i}",
            space.config_from_gates({g: rng.choice(space.choices(g)) for g in groups}),
        )
        for i in range(count)
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--bench", type=Path, help="a benchmark folder (default: write one)")
    parser.add_argument("--task", default="glyphs")
    parser.add_argument("--scale", type=float, default=0.25, help="of a written benchmark")
    parser.add_argument("--steps", type=int, default=40)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--hflip", action="store_true")
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--storage", help="a finished study's storage URL")
    parser.add_argument("--study", default="glyphs")
    parser.add_argument("--seed", type=int, default=0, help="samples configs without --storage")
    parser.add_argument("--threads", type=int, help="torch threads (default: torch's)")
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    torch.set_flush_denormal(True)
    bench = args.bench
    if bench is None:
        from spotpatch.benchmark import write_benchmark

        bench = write_benchmark(
            Path(tempfile.mkdtemp()) / "bench", scale=args.scale, tasks=[args.task], progress=False
        )
    base = load_base("spotpatch-tiny", device="cpu")
    study = evaluator_of(load_spec(bench / "studies" / f"{args.task}.toml"), base=base)
    task, space = study.task, study.space
    configs = [(p, space.preset(p)) for p in PRESETS]
    if args.storage:
        configs += _searched(args.storage, args.study, 10)
        source = f"the first 10 searched trials of study {args.study} in {args.storage}"
    else:
        configs += _sampled(space, args.seed, 10)
        source = f"10 configs sampled from the {space.granularity} space, seed {args.seed}"
    evaluators = {
        mode: PatchEvaluator(
            task,
            base,
            TrainSettings(
                steps=args.steps,
                batch_size=args.batch_size,
                hflip=args.hflip,
                prefix_cache="off" if mode == "uncached" else "auto",
            ),
            kinds=space.kinds,
            granularity=space.granularity,
            progress=False,
        )
        for mode in ("uncached", "cached")
    }
    names = cut_points(base.model)
    cuts = {n: cut_point(base.model, list(space.patch_tensors(c))) for n, c in configs}
    lines = []
    print(f"{task.name}: {len(task.train)} train / {len(task.val)} val images; configs: {source}")
    start_all = time.perf_counter()
    for round_ in range(args.rounds):
        for name, config in configs:
            # A config with nothing to cache computes the same way in both modes: timed once.
            for mode in ("uncached", "cached") if cuts[name] else ("uncached",):
                held = prefix_cache_bytes()
                start, cpu = time.perf_counter(), time.process_time()
                result = evaluators[mode].evaluate(config)
                line = {
                    "round": round_,
                    "config": name,
                    "mode": mode,
                    "cut": names[cuts[name] - 1] if cuts[name] else None,
                    "seconds": time.perf_counter() - start,
                    "cpu_seconds": time.process_time() - cpu,
                    "train_seconds": result.train_seconds,
                    "eval_seconds": result.eval_seconds,
                    "built_bytes": prefix_cache_bytes() - held,
                    "map": result.map,
                    "patch_bytes": result.patch_bytes,
                }
                lines.append(line)
                print(json.dumps(line), flush=True)
    wall = time.perf_counter() - start_all
    args.out.mkdir(parents=True, exist_ok=True)
    with open(args.out / "prefix_cache.jsonl", "w") as f:
        f.writelines(json.dumps(line) + "\n" for line in lines)

    def median(name: str, mode: str, key: str, rounds=range(args.rounds)) -> float:
        return statistics.median(
            x[key]
            for x in lines
            if (x["config"], x["mode"]) == (name, mode) and x["round"] in rounds
        )

    later = range(1, args.rounds) if args.rounds > 1 else range(1)
    full = {key: median("full", "uncached", key) for key in ("seconds", "cpu_seconds")}
    rows = []
    for name, config in configs:
        row = {
            "config": name,
            "bytes %": 100 * space.patch_bytes(config) / space.full_bytes(),
            "runs from": names[cuts[name] - 1] if cuts[name] else None,
            "uncached s": median(name, "uncached", "seconds"),
            "uncached vs full": median(name, "uncached", "seconds") / full["seconds"],
            "cpu: uncached vs full": median(name, "uncached", "cpu_seconds") / full["cpu_seconds"],
            "same map": len({x["map"] for x in lines if x["config"] == name}) == 1,
        }
        if cuts[name]:
            first = next(x for x in lines if (x["config"], x["mode"]) == (name, "cached"))
            cached = median(name, "cached", "seconds", later)
            row |= {
                "cached s (first)": first["seconds"],
                "cached s": cached,
                "cached / uncached": cached / row["uncached s"],
                "cached vs full": cached / full["seconds"],
                "cpu: cached vs full": median(name, "cached", "cpu_seconds", later)
                / full["cpu_seconds"],
            }
        rows.append(row)
    record = {
        "task": task.name,
        "train_images": len(task.train),
        "val_images": len(task.val),
        "steps": args.steps,
        "batch_size": args.batch_size,
        "hflip": args.hflip,
        "rounds": args.rounds,
        "threads": torch.get_num_threads(),
        "configs": source,
        "cached_bytes": prefix_cache_bytes(),
        "wall_seconds": wall,
        "rows": rows,
    }
    (args.out / "prefix_cache.json").write_text(json.dumps(record, indent=1) + "\n")
    print(
        f"\n{task.name}, {len(task.train)} train / {len(task.val)} val images, {args.steps} steps "
        f"at batch {args.batch_size}, {args.rounds} rounds, {torch.get_num_threads()} threads; "
        f"caches {prefix_cache_bytes() / 2**20:.1f} MiB; {wall:.0f} s in all"
    )
    print(
        "| config | bytes | runs from | uncached s | cached s, first | cached s | "
        "cached / uncached | vs full: uncached | cached | CPU s vs full: uncached | cached |"
    )
    print("|---|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|")
    for r in rows:
        cells = [r["config"], f"{r['bytes %']:.1f} %", r["runs from"] or "input"]
        cells += [f"{r['uncached s']:.2f}"]
        if r["runs from"]:
            cells += [f"{r[k]:.2f}" for k in ("cached s (first)", "cached s")]
            cells += [f"{r['cached / uncached']:.2f}x"]
        else:
            cells += ["", "", ""]
        cells += [f"{r['uncached vs full']:.2f}x", _ratio(r, "cached vs full")]
        cells += [f"{r['cpu: uncached vs full']:.2f}x", _ratio(r, "cpu: cached vs full")]
        print("| " + " | ".join(cells) + " |" + ("" if r["same map"] else " mAP differs"))


def _ratio(row: dict, key: str) -> str:
    return f"{row[key]:.2f}x" if key in row else ""


if __name__ == "__main__":
    main()
