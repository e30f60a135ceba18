"""The comparison across all ten bundled tasks, as `spotpatch report` prints it.

Every task gets the same budget: ``--steps`` per trial (150 by default, the demo's) and
``--trials`` per study (the bundled specs' 30), counting the presets (every technique), the
warm start's configs and the repeats (``search.repeats = 2``: the full fine-tune and the answer
run with a second seed). The bundled specs' tolerance is the default, one point: the answer is
the smallest patch within it of the full fine-tune, and the descent keeps half of it as its
margin; their ``search.confirm_seeds = 3``: past the trials, each study confirms its answer
on 3 paired deciding seeds (walking up its front while it falls short) and measures it on 3
fresh paired seeds, whose Δ the report shows. The ten study files go to one ``spotpatch run``; then
``spotpatch report`` writes the table and the claims. Everything resumes: run it again to
finish a stopped run.

    python benchmarks/reproduce.py --out runs/reproduce --workers 2

Writes ``OUT/report.md``, ``OUT/report.json``, ``OUT/status.json`` (each study's answer and its
cost in trial-equivalents: trials, warm start, confirmation runs) and ``OUT/run.json`` (wall
time, machine, settings), and prints the report.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time
from dataclasses import replace
from pathlib import Path

import torch

from spotpatch.benchmark import BENCHMARK_TASKS, write_benchmark
from spotpatch.cli import main
from spotpatch.spaces import PRESETS
from spotpatch.studies import (
    fleet_report,
    load_spec,
    open_storage,
    report_markdown,
    study_status,
    write_spec,
)


def _machine(device: str) -> str:
    cpu = f"{os.cpu_count()} CPU cores ({platform.machine()})"
    if device != "cpu" and torch.cuda.is_available():
        return f"{torch.cuda.get_device_name(0)}, {cpu}, torch {torch.__version__}"
    return f"{cpu}, no GPU used, torch {torch.__version__}"


def study_files(
    out: Path,
    *,
    steps: int,
    trials: int | None,
    device: str,
    seed: int,
    tasks: list[str] | None = None,
    sampler: str | None = None,
    lambdas: tuple[float, ...] | None = None,
    presets: tuple[str, ...] | None = None,
    repeats: int | None = None,
    confirm_seeds: int | None = None,
    confirm_margin: float | None = None,
    bench: Path | None = None,
) -> list[Path]:
    """The bundled benchmark under ``out/bench`` (written once) and one study file per task
    under ``out/studies``, all on one storage, at one budget. ``tasks`` (default: all ten),
    ``trials``, ``sampler``, ``lambdas`` (the warm start's penalty path), ``presets``,
    ``repeats``, ``confirm_seeds`` and ``confirm_margin`` replace the bundled specs' (None:
    theirs). ``bench``: a benchmark written before (with the same seed) to reuse."""
    bench = bench or out / "bench"
    if not all((bench / "studies" / f"{t.name}.toml").is_file() for t in BENCHMARK_TASKS):
        write_benchmark(bench, seed=seed, overwrite=True)
    storage = f"sqlite:///{out / 'spotpatch.db'}"
    files = []
    for task in BENCHMARK_TASKS:
        if tasks and task.name not in tasks:
            continue
        spec = load_spec(bench / "studies" / f"{task.name}.toml")
        search = replace(spec.search, storage=storage)
        if trials is not None:
            search = replace(search, trials=trials)
        if repeats is not None:
            search = replace(search, repeats=repeats)
        if confirm_seeds is not None:
            search = replace(search, confirm_seeds=confirm_seeds)
        if confirm_margin is not None:
            search = replace(search, confirm_margin=confirm_margin)
        if sampler is not None:
            search = replace(search, sampler=sampler)
        if lambdas is not None:
            search = replace(search, relaxation_lambdas=lambdas)
        if presets is not None:
            search = replace(search, presets=presets)
        spec = replace(
            spec,
            base=replace(spec.base, device=device),
            train=replace(spec.train, steps=steps),
            search=search,
        )
        files.append(write_spec(spec, out / "studies" / f"{task.name}.toml"))
    return files


def _pct(patch_bytes: int, full_bytes: int) -> str:
    return f"{100 * patch_bytes / full_bytes:.1f} %"


def _delta(d: dict) -> str:
    return f"{100 * d['delta']:+.1f} ± {100 * d['delta_sd']:.1f}".replace("-", "−")


def answers_table(out: Path) -> str:
    """RESULTS' table of a finished run, in order of difficulty: each study's answer, the
    configs its confirmation walked (their mean paired Δ on the deciding seeds), the answer's Δ
    on fresh seeds, and the study's cost in trial-equivalents; from ``OUT/report.json`` and
    ``OUT/status.json``."""
    report = json.loads((out / "report.json").read_text(encoding="utf-8"))
    status = {s["name"]: s for s in json.loads((out / "status.json").read_text(encoding="utf-8"))}
    lines = [
        "| study | answer | deciding seeds: patch, mean paired Δ ± se (pairs) | Δ on fresh seeds "
        "| within a point | cost (trials) |",
        "|---|---|---|---|---|---|",
    ]
    for row in report["rows"]:
        s = status[row["study"]]
        full = row["techniques"]["full"]["bytes"]
        answer, c = s["answer"], s["answer"]["confirmation"]
        walk = (
            "; ".join(
                f"{_pct(w['patch_bytes'], full)}: {_delta(w['decide'])} ({w['decide']['seeds']})"
                if w.get("decide")
                else f"{_pct(w['patch_bytes'], full)}: the full fine-tune"
                for w in c["walk"]
            )
            if c
            else "-"
        )
        fresh = _delta(c["reported"]) if c and c.get("reported") else "-"
        holds = "-" if not c else ("yes" if c["holds"] else "**no**")
        lines.append(
            f"| {row['study']} | {_pct(answer['patch_bytes'], full)} | {walk} | {fresh} | "
            f"{holds} | {s['cost_trials']:.1f} |"
        )
    return "\n".join(lines)


def main_(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=Path("runs/reproduce"))
    parser.add_argument("--steps", type=int, default=150, help="steps per trial (default 150)")
    parser.add_argument("--trials", type=int, help="trials per task (default: the specs', 30)")
    parser.add_argument(
        "--repeats", type=int, help="runs of the full fine-tune and the answer (default: 2)"
    )
    parser.add_argument(
        "--confirm-seeds", type=int, help="the answer's paired seeds (default: the specs', 3)"
    )
    parser.add_argument(
        "--confirm-margin",
        type=float,
        help="how surely the answer holds on its deciding seeds (default: the specs', 1.5)",
    )
    parser.add_argument("--workers", type=int, default=1, help="trials at once (default 1)")
    parser.add_argument("--device", default="auto", help="auto (default), cpu, cuda")
    parser.add_argument("--seed", type=int, default=0, help="benchmark seed (default 0)")
    parser.add_argument(
        "--tasks",
        nargs="+",
        choices=[t.name for t in BENCHMARK_TASKS],
        help="only these tasks (default: all ten)",
    )
    parser.add_argument("--sampler", help="the sampler of every study (default: the specs')")
    parser.add_argument(
        "--lambdas",
        type=float,
        nargs="+",
        help="the warm start's penalty path (default: the specs')",
    )
    parser.add_argument(
        "--bench", type=Path, help="reuse this written benchmark (default: write OUT/bench)"
    )
    parser.add_argument(
        "--presets", nargs="+", choices=PRESETS, help="the presets (default: the specs', all)"
    )
    parser.add_argument(
        "--table",
        action="store_true",
        help="only print the answers' table of a finished OUT (from its report and status)",
    )
    args = parser.parse_args(argv)
    out = args.out.resolve()
    if args.table:
        print(answers_table(out))
        return 0
    out.mkdir(parents=True, exist_ok=True)
    files = study_files(
        out,
        steps=args.steps,
        trials=args.trials,
        device=args.device,
        seed=args.seed,
        tasks=args.tasks,
        sampler=args.sampler,
        lambdas=tuple(args.lambdas) if args.lambdas else None,
        presets=tuple(args.presets) if args.presets else None,
        repeats=args.repeats,
        confirm_seeds=args.confirm_seeds,
        confirm_margin=args.confirm_margin,
        bench=args.bench.resolve() if args.bench else None,
    )
    specs = [load_spec(f) for f in files]
    trials = sorted({s.search.trials for s in specs})
    repeats = sorted({s.search.repeats for s in specs})
    tolerances = sorted({s.search.tolerance for s in specs})
    start = time.perf_counter()
    code = main(["run", *map(str, files), "--workers", str(args.workers)])
    seconds = time.perf_counter() - start
    if code:
        return code
    storage = open_storage(f"sqlite:///{out / 'spotpatch.db'}", existing=True)
    report = fleet_report(storage)
    text = report_markdown(report)
    (out / "report.md").write_text(text, encoding="utf-8")
    (out / "report.json").write_text(json.dumps(report.to_json(), indent=2), encoding="utf-8")
    status = [s.to_json() for s in study_status(storage)]
    (out / "status.json").write_text(json.dumps(status, indent=2), encoding="utf-8")
    run = {
        "seconds": round(seconds, 1),
        "machine": _machine(args.device),
        "steps": args.steps,
        "trials": trials[0] if len(trials) == 1 else trials,
        "repeats": repeats[0] if len(repeats) == 1 else repeats,
        "tolerance": tolerances[0] if len(tolerances) == 1 else tolerances,
        "confirm_seeds": sorted({s.search.confirm_seeds for s in specs}),
        "confirm_margin": sorted({s.search.confirm_margin for s in specs}),
        "cost_trials_per_study": sum(s["cost_trials"] for s in status) / len(status),
        "workers": args.workers,
        "tasks": len(files),
        "sampler": args.sampler,
        "lambdas": args.lambdas,
        "presets": args.presets,
    }
    (out / "run.json").write_text(json.dumps(run, indent=2), encoding="utf-8")
    print(text)
    print(answers_table(out))
    print(f"{len(files)} studies x {run['trials']} trials at {args.steps} steps, "
          f"{args.workers} workers: {seconds:.0f} s on {run['machine']}")  # fmt: skip
    return 0


if __name__ == "__main__":
    raise SystemExit(main_())
