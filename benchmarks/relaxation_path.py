"""Where the warm start's configs land: each penalty phase's config trained, against the full
fine-tune at the same budget.

Run: ``.venv/bin/python benchmarks/relaxation_path.py --data runs/reproduce/bench
[--tasks glyphs digits night] [--variants base zero soft ...] [--steps 150]``

For each task and each relaxation variant it runs the gate relaxation on the task's bundled
spec (block gates, kinds bn/dw/lora4/full, the spec's seed), then trains every distinct config
the phases read off exactly as a study's trial would (the spec's budget, one seed), and the
``head`` and ``full`` presets once per task. The table gives, per task and variant, the most
accurate phase config (its mAP minus the full fine-tune's, and its bytes as a % of the full
detector) and the smallest phase config within 1 point of the full fine-tune, if any.

Each run is appended to a JSON-lines file (``--log``) and skipped when the script runs again.
"""

from __future__ import annotations

import argparse
import json
import time
from dataclasses import replace
from pathlib import Path

import torch

from spotpatch.search import relax
from spotpatch.studies import evaluator_of, load_spec

#: name -> options of :func:`spotpatch.search.relax` (and a multiple of the trial's steps).
VARIANTS = {
    "base": {"lambdas": (0.05, 0.2, 0.8, 3.0)},
    "zero": {"lambdas": (0.0, 0.05, 0.2, 0.8, 3.0)},
    "soft": {"lambdas": (0.05, 0.2, 0.8, 3.0), "hard": False},
    "soft-zero": {"lambdas": (0.0, 0.05, 0.2, 0.8, 3.0), "hard": False},
    "long": {"lambdas": (0.05, 0.2, 0.8, 3.0), "steps_x": 2},
    "long-zero": {"lambdas": (0.0, 0.05, 0.2, 0.8, 3.0), "steps_x": 2},
    "soft-long-zero": {"lambdas": (0.0, 0.05, 0.2, 0.8, 3.0), "hard": False, "steps_x": 2},
    # Deltas train under uniform gates for half a run's steps before the gates learn.
    "warm": {"lambdas": (0.05, 0.2, 0.8, 3.0), "warmup": 0.5},
    "warm-zero": {"lambdas": (0.0, 0.05, 0.2, 0.8, 3.0), "warmup": 0.5},
    # One gate per detector stage (coarse), its configs trained in the study's finer space.
    "stage": {"lambdas": (0.05, 0.2, 0.8, 3.0), "granularity": "stage"},
    "stage-zero": {"lambdas": (0.0, 0.05, 0.2, 0.8, 3.0), "granularity": "stage"},
}
TASKS = ("glyphs", "digits", "night")


def _done(log: Path) -> list[dict]:
    if not log.is_file():
        return []
    return [json.loads(line) for line in log.read_text().splitlines() if line.strip()]


def _append(log: Path, record: dict) -> None:
    log.parent.mkdir(parents=True, exist_ok=True)
    with log.open("a") as f:
        f.write(json.dumps(record) + "\n")


def run(data: Path, tasks, variants, steps: int, log: Path, presets: bool = True) -> None:
    records = _done(log)
    for task in tasks:
        spec = load_spec(data / "studies" / f"{task}.toml")
        spec = replace(spec, train=replace(spec.train, steps=steps))
        evaluator = evaluator_of(spec, progress=False)
        space = evaluator.space
        full = space.full_bytes()
        for preset in ("head", "full") if presets else ():
            if any(r["task"] == task and r.get("preset") == preset for r in records):
                continue
            result = evaluator.evaluate(space.preset(preset))
            record = {"task": task, "preset": preset, "map": result.map, "steps": steps,
                      "bytes_pct": 100 * result.patch_bytes / full}  # fmt: skip
            _append(log, record)
            records.append(record)
        for name in variants:
            if any(r["task"] == task and r.get("variant") == name for r in records):
                continue
            options = dict(VARIANTS[name])
            times = options.pop("steps_x", 1)
            granularity = options.pop("granularity", space.granularity)
            start = time.perf_counter()
            result = relax(
                evaluator.base,
                evaluator.task,
                space.with_options(granularity=granularity),
                evaluator.settings,
                steps=steps * times,
                seed=spec.seed,
                progress=False,
                **options,
            )
            relax_seconds = time.perf_counter() - start
            configs = []
            for phase in result.phases:
                trained = evaluator.evaluate(phase.config)
                configs.append(
                    {
                        "lambda": phase.lam,
                        "map": trained.map,
                        "bytes_pct": 100 * trained.patch_bytes / full,
                        "summary": phase.config.summary(),
                        "sites": phase.config.to_dict(),
                        "train_seconds": trained.train_seconds,
                    }
                )
            record = {"task": task, "variant": name, "steps": steps, "phases": configs,
                      "relax_seconds": relax_seconds}  # fmt: skip
            _append(log, record)
            records.append(record)
            print(table(records), flush=True)


def table(records: list[dict]) -> str:
    lines = [
        "| task | variant | full | best phase: Δ vs full (bytes %) | smallest within 1 pt "
        "(bytes %) | relaxation s |",
        "|---|---|---|---|---|---|",
    ]
    fulls = {r["task"]: r["map"] for r in records if r.get("preset") == "full"}
    for r in records:
        if "variant" not in r or r["task"] not in fulls:
            continue
        full = fulls[r["task"]]
        best = max(r["phases"], key=lambda p: p["map"])
        near = [p for p in r["phases"] if p["map"] >= full - 0.01]
        small = min(near, key=lambda p: p["bytes_pct"]) if near else None
        lines.append(
            f"| {r['task']} | {r['variant']} | {full:.3f} | "
            f"{100 * (best['map'] - full):+.1f} ({best['bytes_pct']:.1f}) | "
            + (f"{small['bytes_pct']:.1f}" if small else "none")
            + f" | {r['relax_seconds']:.0f} |"
        )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, required=True, help="a written bundled benchmark")
    parser.add_argument("--tasks", nargs="+", default=list(TASKS))
    parser.add_argument("--variants", nargs="+", default=list(VARIANTS), choices=VARIANTS)
    parser.add_argument("--steps", type=int, default=150, help="a trial's steps (default 150)")
    parser.add_argument("--log", type=Path, default=Path("benchmarks/results/relaxation.jsonl"))
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--table", action="store_true", help="only print the table")
    parser.add_argument(
        "--no-presets", action="store_true", help="leave head and full to another process"
    )
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    if not args.table:
        run(args.data, args.tasks, args.variants, args.steps, args.log, not args.no_presets)
    print(table(_done(args.log)))


if __name__ == "__main__":
    main()
