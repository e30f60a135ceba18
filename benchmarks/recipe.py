"""The patch training recipe: learning rate and per-role scales, measured on fixed configs.

Run: ``.venv/bin/python benchmarks/recipe.py --data runs/reproduce/bench --tasks glyphs
[--configs full lora4 bn] [--config FILE.json ...] [--grid 0.003:1 0.01:1 0.01:3 0.01:10]``

Trains each config (the ``full``, ``lora4`` and ``bn`` presets, and any config file: a
``{site: kind}`` JSON or an exported ``patch.json``) exactly as a study's trial would, at
``--steps`` (150 by default, the budget of ``reproduce.py``), with one seed for every cell, at
each ``LR:SCALE`` of the grid: ``lr`` for layers' weights and the class head, ``lr x SCALE`` for
patched norm layers and low-rank factors (``train.norm_lr_scale`` and ``train.lora_lr_scale``).
The defaults of a study file (lr 0.01, scales 3) were set from this table.

Each cell is appended to a JSON-lines file (``--log``) and skipped when the script runs again.
"""

from __future__ import annotations

import argparse
import json
import time
from dataclasses import replace
from pathlib import Path

import torch
from paired_noise import records as read_log

from spotpatch.studies import evaluator_of, load_spec, read_config

SEED = 1_000_000  # the first seed ``spotpatch confirm`` retrains with
GRID = ("0.003:1", "0.01:1", "0.01:3", "0.01:10")


def run(data: Path, tasks, configs, files, grid, steps: int, log: Path) -> None:
    records = read_log(log)
    for task in tasks:
        spec = load_spec(data / "studies" / f"{task}.toml")
        evaluator = evaluator_of(spec, progress=False)
        space = evaluator.space
        chosen = {name: space.preset(name) for name in configs}
        chosen |= {Path(f).stem: read_config(f, space) for f in files}
        for label, config in chosen.items():
            for cell in grid:
                lr, scale = (float(x) for x in cell.split(":"))
                key = {"task": task, "config": label, "lr": lr, "scale": scale, "steps": steps}
                if any(all(r.get(k) == v for k, v in key.items()) for r in records):
                    continue
                evaluator.settings = replace(
                    evaluator.settings,
                    steps=steps,
                    lr=lr,
                    norm_lr_scale=scale,
                    lora_lr_scale=scale,
                )
                start = time.perf_counter()
                result = evaluator.evaluate(config, seed=SEED)
                record = key | {
                    "map": result.map,
                    "bytes_pct": 100 * result.patch_bytes / space.full_bytes(),
                    "seconds": time.perf_counter() - start,
                }
                with log.open("a") as f:
                    f.write(json.dumps(record) + "\n")
                records.append(record)
                print(json.dumps(record), flush=True)


def table(records: list[dict]) -> str:
    cells = sorted({(r["lr"], r["scale"]) for r in records})
    rows = sorted({(r["task"], r["config"], r["bytes_pct"]) for r in records})
    head = " | ".join(f"lr {lr:g}, scales {s:g}" for lr, s in cells)
    lines = [f"| task | config (bytes %) | {head} |", "|---|---|" + "---|" * len(cells)]
    for task, config, pct in rows:
        values = []
        for lr, s in cells:
            hit = [
                r["map"]
                for r in records
                if (r["task"], r["config"], r["lr"], r["scale"]) == (task, config, lr, s)
            ]
            values.append(f"{hit[-1]:.3f}" if hit else "")
        lines.append(f"| {task} | {config} ({pct:.1f}) | " + " | ".join(values) + " |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, required=True, help="a written bundled benchmark")
    parser.add_argument("--tasks", nargs="+", default=["glyphs"])
    parser.add_argument("--configs", nargs="*", default=["full", "lora4", "bn"])
    parser.add_argument("--config", nargs="*", default=[], help="config files to train too")
    parser.add_argument("--grid", nargs="+", default=list(GRID), help="LR:SCALE cells")
    parser.add_argument("--steps", type=int, default=150, help="steps per trial (default 150)")
    parser.add_argument("--log", type=Path, default=Path("benchmarks/results/recipe.jsonl"))
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--table", action="store_true", help="only print the table")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    if not args.table:
        run(args.data, args.tasks, args.configs, args.config, args.grid, args.steps, args.log)
    print(table(read_log(args.log)))


if __name__ == "__main__":
    main()
