"""Warm start vs cold search at equal compute: hypervolume after 8/16/24 trial-equivalents.

Run: ``.venv/bin/python benchmarks/warm_start.py [--seeds 3] [--steps 100] [--scale 0.5]``

On a near (``shapes-subset``) and a far (``glyphs``) bundled task, for each seed, it runs one
study per method on the task's patch space (block gates, kinds bn/dw/lora4/full):

- ``relax+nsga2``: the gate relaxation, its distinct configs enqueued, then NSGA-II;
- ``relax+neighbours``: the same warm start, then the ``neighbours`` sampler (front configs
  moved a gate or a stage at a time, NSGA-II for a quarter of the trials);
- ``relax+descent``: the same warm start and the full fine-tune (the descent's mark, one
  trial), then the ``descent`` sampler (from the accurate end down, one stage cheaper per
  trial while the full fine-tune's score holds within a point; then ``neighbours``);
- ``nsga2``, ``tpe``, ``gp``, ``random``: cold studies with that sampler;
- ``nsga2+es``: cold NSGA-II with multi-objective early stopping (checkpoints 1/3, 2/3).

Compute is counted in trial-equivalents (TE): a trained trial is 1, a trial stopped early is
the fraction of its steps it trained, and the relaxation is its CPU seconds over the mean CPU
seconds of a trial of the cold NSGA-II study of the same task and seed (run first, in the
same process; CPU time keeps the ratio honest on a shared machine). The hypervolume after B TE
is that of the trials finished within B TE (reference: mAP 0, bytes = the full patch; see
``spotpatch.search.hypervolume``). Early stopping's savings are also given directly: its CPU
seconds per trial (intermediate evaluations included) over those of cold NSGA-II.

Each finished study is appended to a JSON-lines file (``--log``, kept in the repository as the
record behind the table in ``benchmarks/RESULTS.md``) and skipped when the script runs again,
so it resumes; ``--table`` only prints the table from the log.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path

import torch

from spotpatch.benchmark import write_benchmark
from spotpatch.evaluators import PatchEvaluator, TrainSettings, load_base
from spotpatch.search import (
    EarlyStopping,
    FrontPoint,
    StudyController,
    hypervolume,
    make_sampler,
    relax,
    run_trials,
    trial_records,
)
from spotpatch.studies import evaluator_of, load_spec

METHODS = (
    "nsga2",
    "relax+nsga2",
    "relax+neighbours",
    "relax+descent",
    "tpe",
    "gp",
    "random",
    "nsga2+es",
)
TASKS = ("shapes-subset", "glyphs")


def _evaluator(data: Path, task: str, steps: int, base) -> PatchEvaluator:
    spec = load_spec(data / "studies" / f"{task}.toml")
    plain = evaluator_of(spec, progress=False)
    settings = TrainSettings(steps=steps, batch_size=spec.train.batch_size, lr=spec.train.lr)
    return PatchEvaluator(
        plain.task,
        base,
        settings,
        kinds=spec.space.kinds,
        granularity=spec.space.granularity,
        seed=spec.seed,
        progress=False,
    )


def run_one(evaluator: PatchEvaluator, method: str, seed: int, budget: int, trial_s: float):
    """One study; returns its record (trials with their cost in TE, relaxation cost)."""
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    name = method.removeprefix("relax+").removesuffix("+es")
    space = evaluator.space
    sampler = make_sampler(name, seed, groups=space.stage_gates(), cost=space.gates_bytes)
    storage = optuna.storages.InMemoryStorage()
    study = optuna.create_study(storage=storage, directions=["maximize", "minimize"])
    early = EarlyStopping(checkpoints=(0.33, 0.67)) if method == "nsga2+es" else None
    controller = StudyController(
        storage, study.study_name, evaluator.space, sampler=sampler, early_stopping=early
    )
    relax_te = 0.0
    record: dict = {"method": method, "seed": seed}
    if method.startswith("relax+"):
        cpu = time.process_time()
        result = relax(
            evaluator.base, evaluator.task, evaluator.space, evaluator.settings, seed=seed
        )
        record["relaxation_cpu_seconds"] = time.process_time() - cpu
        relax_te = record["relaxation_cpu_seconds"] / trial_s
        controller.enqueue(result.distinct_configs(), source="relaxation")
        if name == "descent":  # its mark: the full fine-tune's score
            controller.enqueue([space.preset("full")], source="preset")
        record["relaxation_seconds"] = result.seconds
    record["relaxation_te"] = relax_te
    trials = max(1, int(budget - relax_te + 0.999))
    start, cpu = time.perf_counter(), time.process_time()
    run_trials(controller, evaluator, trials, seed=seed)
    # Stopped trials cost less: early stopping gets more trials for the same budget.
    while relax_te + sum(t["cost"] for t in _trials(study, evaluator)) < budget - 1e-9:
        trials += 1
        run_trials(controller, evaluator, trials, seed=seed)
    record["seconds"] = time.perf_counter() - start
    record["cpu_seconds"] = time.process_time() - cpu
    record["trials"] = _trials(study, evaluator)
    return record


def _trials(study, evaluator: PatchEvaluator) -> list[dict]:
    """Finished trials in order, with their cost in TE and their (mAP, bytes) point."""
    import optuna

    out = []
    for r in trial_records(study):
        if r.complete:
            cost, point = 1.0, [r.map, r.patch_bytes]
        elif r.state == optuna.trial.TrialState.PRUNED:
            cost, point = r.pruned_at / evaluator.settings.steps, None
        else:
            continue
        out.append({"cost": cost, "point": point, "seconds": r.seconds})
    return out


def hv_at(record: dict, te: float, full_bytes: int) -> float:
    """Hypervolume of the trials a study finished within ``te`` trial-equivalents."""
    spent, points = record["relaxation_te"], []
    for i, t in enumerate(record["trials"]):
        spent += t["cost"]
        if spent > te + 1e-9:
            break
        if t["point"] is not None:
            points.append(FrontPoint(i, t["point"][0], t["point"][1]))
    return hypervolume(points, full_bytes) if points else 0.0


def table(records: list[dict], budgets: list[int]) -> str:
    lines = [
        "| task | method | seeds | "
        + " | ".join(f"HV@{b}" for b in budgets)
        + " | warm-start TE |",
        "|---|---|---|" + "---|" * len(budgets) + "---|",
    ]
    for task in TASKS:
        for method in METHODS:
            rows = [r for r in records if r["task"] == task and r["method"] == method]
            if not rows:
                continue
            cells = []
            for b in budgets:
                values = [hv_at(r, b, r["full_bytes"]) for r in rows]
                spread = f" ± {statistics.stdev(values):.3f}" if len(values) > 1 else ""
                cells.append(f"{statistics.mean(values):.3f}{spread}")
            te = statistics.mean(r["relaxation_te"] for r in rows)
            lines.append(
                f"| {task} | {method} | {len(rows)} | "
                + " | ".join(cells)
                + (f" | {te:.1f} |" if method.startswith("relax+") else " | |")
            )
    for task in TASKS:
        pairs = [
            (es, cold)
            for es in records
            if es["task"] == task and es["method"] == "nsga2+es"
            for cold in records
            if (cold["task"], cold["method"], cold["seed"]) == (task, "nsga2", es["seed"])
        ]
        if not pairs:
            continue
        pruned = sum(t["point"] is None for es, _ in pairs for t in es["trials"])
        trials = sum(len(es["trials"]) for es, _ in pairs)
        ratio = statistics.mean(
            (es["cpu_seconds"] / len(es["trials"])) / (cold["cpu_seconds"] / len(cold["trials"]))
            for es, cold in pairs
        )
        te = statistics.mean(sum(t["cost"] for t in es["trials"]) for es, _ in pairs)
        cpu_te = statistics.mean(
            es["cpu_seconds"] / (cold["cpu_seconds"] / len(cold["trials"])) for es, cold in pairs
        )
        lines.append(
            f"\nearly stopping on {task}: {pruned} of {trials} trials stopped; "
            f"{te:.1f} TE spent per study counting steps, {cpu_te:.1f} counting CPU seconds "
            f"(intermediate evaluations included); CPU seconds per trial {ratio:.2f}x cold "
            "NSGA-II's"
        )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--steps", type=int, default=100, help="training steps per trial")
    parser.add_argument("--scale", type=float, default=0.5, help="benchmark size (1 = full)")
    parser.add_argument("--budgets", type=int, nargs="+", default=[8, 12, 16, 24])
    parser.add_argument("--methods", nargs="+", default=list(METHODS), choices=METHODS)
    parser.add_argument("--tasks", nargs="+", default=list(TASKS), choices=TASKS)
    parser.add_argument("--data", default="benchmarks/.data/warm-start", help="benchmark dir")
    parser.add_argument(
        "--log", default="benchmarks/results/warm_start.jsonl", help="results (resumes from it)"
    )
    parser.add_argument("--threads", type=int, default=2, help="torch threads")
    parser.add_argument("--table", action="store_true", help="only print the table")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    log = Path(args.log)
    log.parent.mkdir(parents=True, exist_ok=True)
    records = [json.loads(x) for x in log.read_text().splitlines()] if log.exists() else []
    if not args.table:
        data = Path(args.data)
        if not (data / "studies").is_dir():
            write_benchmark(data, scale=args.scale, tasks=list(TASKS), overwrite=True)
        base = load_base("spotpatch-tiny")
        evaluators = {t: _evaluator(data, t, args.steps, base) for t in args.tasks}
        budget = max(args.budgets)
        # The warm-vs-cold pair first over every seed, then the other methods: a stopped run
        # leaves the main comparison complete. Cold NSGA-II always runs (the TE reference).
        pair = ("nsga2", "relax+nsga2")
        jobs = [(s, m) for s in range(args.seeds) for m in pair]
        jobs += [(s, m) for s in range(args.seeds) for m in args.methods if m not in pair]
        for seed, method in jobs:
            for task in args.tasks:
                done = [
                    r
                    for r in records
                    if (r["task"], r["method"], r["seed"], r["steps"], r["scale"])
                    == (task, method, seed, args.steps, args.scale)
                ]
                if done or (method not in args.methods and method != "nsga2"):
                    continue
                cold = [
                    r
                    for r in records
                    if (r["task"], r["method"], r["seed"]) == (task, "nsga2", seed)
                ]
                # CPU seconds per trial of the cold study: robust to other load.
                trial_s = cold[0]["cpu_seconds"] / len(cold[0]["trials"]) if cold else 1.0
                print(f"{task} seed {seed}: {method}", flush=True)
                record = run_one(evaluators[task], method, seed, budget, trial_s)
                record.update(
                    task=task,
                    steps=args.steps,
                    scale=args.scale,
                    full_bytes=evaluators[task].space.full_bytes(),
                )
                records.append(record)
                with log.open("a") as f:
                    f.write(json.dumps(record) + "\n")
    print(table(records, args.budgets))


if __name__ == "__main__":
    main()
