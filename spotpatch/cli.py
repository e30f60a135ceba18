"""The ``spotpatch`` command: parse, call one function of a room, print.

A :class:`UserError` becomes one line on stderr and exit status 2.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from collections.abc import Sequence
from pathlib import Path

from spotpatch import __version__
from spotpatch._errors import UserError

__all__ = ["main", "build_parser"]

STORAGE = "sqlite:///spotpatch.db"


def _table(rows: list[list[str]], header: list[str]) -> str:
    widths = [max(len(str(r[i])) for r in [header, *rows]) for i in range(len(header))]

    def line(r):
        return "  ".join(
            str(v).rjust(w) if i else str(v).ljust(w)
            for i, (v, w) in enumerate(zip(r, widths, strict=True))
        )

    return "\n".join([line(header), line(["-" * w for w in widths]), *map(line, rows)])


def _kib(n: int) -> str:
    return f"{n / 1024:,.1f} KiB"


# -- commands ----------------------------------------------------------------------------------
def cmd_demo_data(args: argparse.Namespace) -> int:
    from spotpatch.evaluators import write_benchmark

    out = write_benchmark(
        args.out, seed=args.seed, scale=args.scale, tasks=args.tasks or None, overwrite=args.force
    )
    print(f"wrote the bundled benchmark to {out} (study specs in {out / 'studies'})")
    return 0


def cmd_pretrain(args: argparse.Namespace) -> int:
    from dataclasses import replace

    from spotpatch.evaluators import PRETRAIN_SETTINGS, pretrain

    settings = replace(
        PRETRAIN_SETTINGS,
        **{
            k: v
            for k, v in (("steps", args.steps), ("batch_size", args.batch_size), ("lr", args.lr))
            if v is not None
        },
    )
    result = pretrain(
        args.data,
        args.out,
        model=args.model,
        settings=settings,
        seed=args.seed,
        device=args.device,
    )
    print(
        f"base {args.model} -> {result.out}: val mAP {result.map:.3f} (AP50 {result.map50:.3f}),"
        f" {result.seconds:.0f} s, sha256 {result.sha256[:12]}"
    )
    return 0


def cmd_evaluate(args: argparse.Namespace) -> int:
    from spotpatch.studies import evaluate_spec

    result, evaluator = evaluate_spec(args.study, preset=args.preset, config_file=args.config)
    what = args.preset or str(args.config)
    record = {
        "study": evaluator.task.name,
        "config": what,
        "map": result.map,
        "map50": result.map50,
        "patch_bytes": result.patch_bytes,
        "train_seconds": round(result.train_seconds, 2),
        "sites": result.config.to_dict(),
    }
    if args.json:
        print(json.dumps(record, indent=2))
    else:
        print(
            _table(
                [
                    [
                        what,
                        f"{result.map:.3f}",
                        f"{result.map50:.3f}",
                        _kib(result.patch_bytes),
                        f"{result.train_seconds:.1f}",
                        result.config.summary(),
                    ]
                ],
                ["config", "mAP", "AP50", "patch", "train s", "sites"],
            )
        )
    return 0


def _progress_line(state) -> str:
    best = "-" if state.best_map is None else f"{state.best_map:.3f}"
    small = "-" if state.smallest_front_bytes is None else _kib(state.smallest_front_bytes)
    extra = f", {state.failed} failed" if state.failed else ""
    extra += f", {state.pruned} pruned" if state.pruned else ""
    return (
        f"trials {state.done}/{state.total}{extra} | front {state.front_size} | "
        f"best mAP {best} | smallest front patch {small}"
    )


def cmd_run(args: argparse.Namespace) -> int:
    from spotpatch.studies import run_study

    tty = sys.stderr.isatty()

    def report(state) -> None:
        line = _progress_line(state)
        print(
            f"\r{line}\033[K" if tty else line,
            end="" if tty else "\n",
            file=sys.stderr,
            flush=True,
        )

    try:
        state = run_study(
            args.study,
            trials=args.trials,
            backend=args.backend,
            workers=args.workers,
            storage=args.storage,
            ray_address=args.ray_address,
            on_trial=report,
        )
    except KeyboardInterrupt:
        print("\nspotpatch: stopped; run the same command again to resume", file=sys.stderr)
        return 130
    if tty:
        print(file=sys.stderr)
    print(_progress_line(state))
    return 0


def cmd_status(args: argparse.Namespace) -> int:
    from spotpatch.studies import open_storage, study_status

    rows = study_status(open_storage(args.storage))
    if args.json:
        print(json.dumps([r.to_json() for r in rows], indent=2))
        return 0
    if not rows:
        print(f"no spotpatch studies in {args.storage}")
        return 0
    print(
        _table(
            [
                [
                    r.name,
                    str(r.progress.done),
                    str(r.progress.failed),
                    str(r.progress.pruned),
                    str(r.progress.front_size),
                    "-" if r.progress.best_map is None else f"{r.progress.best_map:.3f}",
                    "-"
                    if r.progress.smallest_front_bytes is None
                    else _kib(r.progress.smallest_front_bytes),
                    "-" if r.progress.hypervolume is None else f"{r.progress.hypervolume:.3f}",
                ]
                for r in rows
            ],
            ["study", "done", "failed", "pruned", "front", "best mAP", "smallest front", "HV"],
        )
    )
    return 0


def cmd_demo(args: argparse.Namespace) -> int:
    from spotpatch.demo import run_demo

    run_demo(Path(args.out))
    return 0


# -- parser ------------------------------------------------------------------------------------
def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="spotpatch",
        description="Find, per detection task, the smallest patch to a shared mobile detector "
        "that reaches the task's accuracy.",
    )
    parser.add_argument("--version", action="version", version=f"spotpatch {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="log more detail")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser(
        "demo-data",
        help="write the bundled benchmark: a source set, 10 tasks and a study spec per task",
    )
    p.add_argument("out", type=Path, help="folder to write (must be empty or missing)")
    p.add_argument("--seed", type=int, default=0, help="generator seed (default 0)")
    p.add_argument(
        "--scale",
        type=float,
        default=1.0,
        help="multiply every image count (default 1.0: 512/128/128 per task)",
    )
    p.add_argument("--tasks", nargs="+", metavar="NAME", help="only these tasks")
    p.add_argument("--force", action="store_true", help="replace a non-empty OUT")
    p.set_defaults(func=cmd_demo_data)

    p = sub.add_parser("pretrain", help="train a base detector on a COCO set")
    p.add_argument(
        "--data", type=Path, required=True, help="folder with train.json, train/, val.json, val/"
    )
    p.add_argument("--out", type=Path, required=True, help="the .safetensors file to write")
    p.add_argument("--model", default="spotpatch-tiny", help="detector (default spotpatch-tiny)")
    p.add_argument("--steps", type=int, help="optimizer steps (default 4000)")
    p.add_argument("--batch-size", type=int, help="images per step (default 32)")
    p.add_argument("--lr", type=float, help="peak learning rate (default 0.003)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--device", default="auto", help="auto (default), cpu, cuda...")
    p.set_defaults(func=cmd_pretrain)

    p = sub.add_parser("evaluate", help="train and score one patch config of a study")
    p.add_argument("study", type=Path, help="the study file (STUDY.toml)")
    which = p.add_mutually_exclusive_group(required=True)
    which.add_argument(
        "--preset", choices=["head", "bn", "dw", "lora4", "full"], help="a fixed recipe"
    )
    which.add_argument("--config", type=Path, help="a JSON file {site: kind}, or a patch.json")
    p.add_argument("--json", action="store_true", help="print JSON")
    p.set_defaults(func=cmd_evaluate)

    p = sub.add_parser("run", help="run or resume a task's study")
    p.add_argument("study", type=Path, help="the study file (STUDY.toml)")
    p.add_argument("--trials", type=int, help="trials in total (default: the spec's)")
    p.add_argument("--backend", choices=["local", "ray"], help="where trials run")
    p.add_argument("--ray-address", help="join a running Ray cluster: auto or HOST:PORT")
    p.add_argument("--workers", type=int, help="trials at once (local processes or Ray)")
    p.add_argument("--storage", help="Optuna storage URL (default: the spec's)")
    p.set_defaults(func=cmd_run)

    p = sub.add_parser("status", help="one line per study")
    p.add_argument("--storage", default=STORAGE, help=f"Optuna storage URL (default {STORAGE})")
    p.add_argument("--json", action="store_true", help="print JSON")
    p.set_defaults(func=cmd_status)

    p = sub.add_parser("demo", help="the demo: bundled benchmark, then presets on two tasks")
    p.add_argument("--out", default="demo", help="working folder (default ./demo)")
    p.set_defaults(func=cmd_demo)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.INFO if args.verbose else logging.WARNING,
        format="spotpatch: %(levelname)s: %(message)s",
    )
    try:
        return args.func(args)
    except UserError as e:
        print(f"spotpatch: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("spotpatch: interrupted", file=sys.stderr)
        return 130
