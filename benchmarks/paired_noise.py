"""How noisy is one confirmation decision: paired against unpaired seeds, per steps.

Run: ``.venv/bin/python benchmarks/paired_noise.py --data runs/reproduce/bench
[--tasks glyphs new-shapes tiny-crowd] [--configs lora4] [--seeds 6] [--steps 150 300]``

Trains each config (a preset, against the ``full`` preset) with ``--seeds`` seeds at each
``--steps``, exactly as a study's trial would (the bundled spec's recipe, only the steps
changed). Seeds ``3_000_000 + i``: no study trial or confirmation run trains with them. Each
run is one line of a JSON-lines file (``--log``), skipped when the script runs again.

Then, per task, config and steps, from the same runs:

- *paired*: the standard deviation of one pair's Δ, ``map(config, seed i) - map(full, seed
  i)``: both trained with the same seed (same batches, same class-head initialization);
- *unpaired*: ``sqrt(var(config) + var(full))``, the standard deviation of a Δ between runs
  with independent seeds;
- the standard deviation of a K-seed mean Δ is either over ``sqrt(K)``.

Prints a Markdown table and writes it with the runs' summary to ``--summary`` (JSON).
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
import time
from dataclasses import replace
from pathlib import Path

from spotpatch.studies import evaluator_of, load_spec

SEED = 3_000_000
TASKS = ("glyphs", "new-shapes", "tiny-crowd")


def records(log: Path) -> list[dict]:
    """The runs a JSON-lines log holds (none when it does not exist yet)."""
    if not log.is_file():
        return []
    return [json.loads(line) for line in log.read_text().splitlines() if line.strip()]


def write_summary(log: Path, out: Path, summarize, tabulate) -> None:
    """``summarize(records)`` of the log's runs, written to ``out`` (JSON) and printed as
    ``tabulate(rows)``."""
    rows = summarize(records(log))
    out.write_text(json.dumps(rows, indent=2) + "\n", encoding="utf-8")
    print(tabulate(rows))


def run(data: Path, tasks, configs, seeds: int, steps_list, log: Path) -> None:
    done = {(r["task"], r["config"], r["steps"], r["seed"]) for r in records(log)}
    for task in tasks:
        evaluator = None
        for steps in steps_list:
            for i in range(seeds):
                for label in ("full", *configs):
                    seed = SEED + i
                    if (task, label, steps, seed) in done:
                        continue
                    if evaluator is None:
                        spec = load_spec(data / "studies" / f"{task}.toml")
                        evaluator = evaluator_of(spec, progress=False)
                    evaluator.settings = replace(evaluator.settings, steps=steps)
                    start = time.perf_counter()
                    result = evaluator.evaluate(evaluator.space.preset(label), seed=seed)
                    line = {
                        "task": task,
                        "config": label,
                        "steps": steps,
                        "seed": seed,
                        "map": result.map,
                        "bytes": result.patch_bytes,
                        "seconds": round(time.perf_counter() - start, 1),
                    }
                    with log.open("a", encoding="utf-8") as f:
                        f.write(json.dumps(line) + "\n")
                    print(json.dumps(line), flush=True)


def summary(records: list[dict]) -> list[dict]:
    """One row per (task, config, steps) with both of its configs' runs on common seeds."""
    runs: dict[tuple, dict[int, float]] = {}
    for r in records:
        runs.setdefault((r["task"], r["config"], r["steps"]), {})[r["seed"]] = r["map"]
    rows = []
    for (task, label, steps), maps in sorted(runs.items()):
        if label == "full":
            continue
        full = runs.get((task, "full", steps), {})
        seeds = sorted(set(maps) & set(full))
        if len(seeds) < 3:
            continue
        mine = [100 * maps[s] for s in seeds]
        theirs = [100 * full[s] for s in seeds]
        paired = statistics.stdev([a - b for a, b in zip(mine, theirs, strict=True)])
        unpaired = math.sqrt(statistics.variance(mine) + statistics.variance(theirs))
        rows.append(
            {
                "task": task,
                "config": label,
                "steps": steps,
                "seeds": len(seeds),
                "map": statistics.fmean(mine),
                "full_map": statistics.fmean(theirs),
                "delta": statistics.fmean(mine) - statistics.fmean(theirs),
                "sd_config": statistics.stdev(mine),
                "sd_full": statistics.stdev(theirs),
                "sd_paired": paired,
                "sd_unpaired": unpaired,
            }
        )
    return rows


def table(rows: list[dict]) -> str:
    head = (
        "| task | config | steps | seeds | config mAP | full mAP | Δ | sd of one Δ: paired / "
        "unpaired | sd of a 3-seed mean Δ: paired / unpaired |"
    )
    lines = [head, "|" + "---|" * 9]
    for r in rows:
        lines.append(
            f"| {r['task']} | {r['config']} | {r['steps']} | {r['seeds']} | "
            f"{r['map']:.1f} ± {r['sd_config']:.1f} | {r['full_map']:.1f} ± {r['sd_full']:.1f} "
            f"| {r['delta']:+.1f} | {r['sd_paired']:.2f} / {r['sd_unpaired']:.2f} | "
            f"{r['sd_paired'] / math.sqrt(3):.2f} / {r['sd_unpaired'] / math.sqrt(3):.2f} |"
        )
    return "\n".join(lines) + "\n\nmAP and Δ in points; sd: standard deviation over seeds.\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", type=Path, required=True, help="a written benchmark")
    parser.add_argument("--tasks", nargs="+", default=list(TASKS))
    parser.add_argument("--configs", nargs="+", default=["lora4"], help="presets to pair")
    parser.add_argument("--seeds", type=int, default=6)
    parser.add_argument("--steps", type=int, nargs="+", default=[150, 300])
    parser.add_argument("--log", type=Path, default=Path("benchmarks/results/paired_noise.jsonl"))
    parser.add_argument(
        "--summary", type=Path, default=Path("benchmarks/results/paired_noise.json")
    )
    args = parser.parse_args(argv)
    args.log.parent.mkdir(parents=True, exist_ok=True)
    run(args.data, args.tasks, args.configs, args.seeds, args.steps, args.log)
    write_summary(args.log, args.summary, summary, table)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
