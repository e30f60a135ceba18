"""How much of one paired Δ's noise comes from the few images it is scored on.

Run: ``.venv/bin/python benchmarks/eval_images.py --runs runs/seed2 [--tasks textured
new-shapes glyphs tiny-crowd] [--seeds 6]``

``--runs`` is a finished ``benchmarks/reproduce.py`` output (its study files, storage and
report). For each task, its study's answer and the full fine-tune are trained in pairs (the
same seed for both) with ``--seeds`` seeds ``4_000_000 + i`` (no study trial, confirmation or
``paired_noise.py`` run trains with them), exactly as a study's trial would, and each trained
patch is scored on the task's val split (128 images in the bundled benchmark, what a study
scores on) and on its test split (128 other images). Each run is one line of a JSON-lines file
(``--log``), skipped when the script runs again.

Then, per task, the standard deviation of one pair's Δ scored on val, on test, and on both
(the mean of the two mAPs: 256 images); the standard deviation of a K-pair mean is that over
``sqrt(K)``. Prints a Markdown table and writes it to ``--summary`` (JSON).
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
import time
from pathlib import Path

import torch
from paired_noise import records, write_summary

from spotpatch.spaces import PatchConfig
from spotpatch.studies import evaluator_of, load_spec, load_study, open_storage

SEED = 4_000_000
TASKS = ("textured", "new-shapes", "glyphs", "tiny-crowd")
SCORES = ("val", "test", "both")


def run(runs: Path, tasks, seeds: int, log: Path) -> None:
    torch.set_num_threads(1)
    done = {(r["task"], r["config"], r["seed"]) for r in records(log)}
    report = json.loads((runs / "report.json").read_text())
    answers = {row["study"]: row["answer"]["trial"] for row in report["rows"]}
    storage = open_storage(f"sqlite:///{runs / 'spotpatch.db'}", existing=True)
    for task in tasks:
        spec = load_spec(runs / "studies" / f"{task}.toml")
        evaluator = evaluator_of(spec, progress=False)
        answer = load_study(task, storage).trials[answers[task]].user_attrs["config"]
        configs = {"answer": PatchConfig.from_dict(answer), "full": evaluator.space.preset("full")}
        for i in range(seeds):
            for label, config in configs.items():
                seed = SEED + i
                if (task, label, seed) in done:
                    continue
                start = time.perf_counter()
                result = evaluator.evaluate(config, seed=seed)
                test, _ = evaluator.score(evaluator.to_patch(result), "test")
                line = {
                    "task": task,
                    "config": label,
                    "seed": seed,
                    "val": result.map,
                    "test": test,
                    "steps": evaluator.settings.steps,
                    "seconds": round(time.perf_counter() - start, 1),
                }
                with log.open("a", encoding="utf-8") as f:
                    f.write(json.dumps(line) + "\n")
                print(json.dumps(line), flush=True)


def _score(r: dict, on: str) -> float:
    return 100 * ((r["val"] + r["test"]) / 2 if on == "both" else r[on])


def summary(records: list[dict]) -> list[dict]:
    """One row per task with both configs' runs on at least three common seeds."""
    runs: dict[str, dict[int, dict[str, dict]]] = {}
    for r in records:
        runs.setdefault(r["task"], {}).setdefault(r["seed"], {})[r["config"]] = r
    rows = []
    for task, by_seed in runs.items():
        pairs = [p for _, p in sorted(by_seed.items()) if len(p) == 2]
        if len(pairs) < 3:
            continue
        row = {"task": task, "seeds": len(pairs)}
        for on in SCORES:
            diffs = [_score(p["answer"], on) - _score(p["full"], on) for p in pairs]
            row[on] = {
                "delta": statistics.fmean(diffs),
                "sd_paired": statistics.stdev(diffs),
                "sd_answer": statistics.stdev(_score(p["answer"], on) for p in pairs),
                "sd_full": statistics.stdev(_score(p["full"], on) for p in pairs),
            }
        rows.append(row)
    return rows


def table(rows: list[dict]) -> str:
    lines = [
        "| task | seeds | Δ: val / test / both | sd of one paired Δ: val / test / both | "
        "sd of a 3-pair mean Δ: val / both |",
        "|" + "---|" * 5,
    ]
    for r in rows:
        deltas = " / ".join(f"{r[on]['delta']:+.1f}" for on in SCORES)
        sds = " / ".join(f"{r[on]['sd_paired']:.2f}" for on in SCORES)
        means = " / ".join(f"{r[on]['sd_paired'] / math.sqrt(3):.2f}" for on in ("val", "both"))
        lines.append(f"| {r['task']} | {r['seeds']} | {deltas} | {sds} | {means} |")
    return "\n".join(lines) + "\n\nΔ in mAP points; both: the mean of the val and test mAPs.\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=Path, required=True, help="a reproduce.py output")
    parser.add_argument("--tasks", nargs="+", default=list(TASKS))
    parser.add_argument("--seeds", type=int, default=6)
    parser.add_argument("--log", type=Path, default=Path("benchmarks/results/eval_images.jsonl"))
    parser.add_argument(
        "--summary", type=Path, default=Path("benchmarks/results/eval_images.json")
    )
    args = parser.parse_args(argv)
    args.log.parent.mkdir(parents=True, exist_ok=True)
    run(args.runs, args.tasks, args.seeds, args.log)
    write_summary(args.log, args.summary, summary, table)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
