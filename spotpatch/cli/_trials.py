"""The commands that train: ``evaluate`` one config and ``run`` a study."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from spotpatch.cli._command import command
from spotpatch.cli._text import ANSWER_HEADER, answer_cells, kib, table

__all__ = ["COMMANDS"]


def _add_evaluate(sub: argparse._SubParsersAction) -> None:
    from spotpatch._defaults import PRESETS

    p = command(sub, cmd_evaluate)
    p.add_argument("study", type=Path, help="the study file (STUDY.toml)")
    which = p.add_mutually_exclusive_group(required=True)
    which.add_argument("--preset", choices=PRESETS, help="a fixed recipe")
    which.add_argument("--config", type=Path, help="a JSON file {site: kind}, or a patch.json")
    p.add_argument("--json", action="store_true", help="print JSON")


def cmd_evaluate(args: argparse.Namespace) -> int:
    """train and score one patch config of a study"""
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
            table(
                [
                    [
                        what,
                        f"{result.map:.3f}",
                        f"{result.map50:.3f}",
                        kib(result.patch_bytes),
                        f"{result.train_seconds:.1f}",
                        result.config.summary(),
                    ]
                ],
                ["config", "mAP", "AP50", "patch", "train s", "sites"],
            )
        )
    return 0


def _add_run(sub: argparse._SubParsersAction) -> None:
    from spotpatch._defaults import BACKENDS

    p = command(sub, cmd_run)
    p.add_argument("studies", nargs="+", type=Path, metavar="STUDY", help="study files (.toml)")
    p.add_argument("--trials", type=int, help="trials in total per study (default: the spec's)")
    p.add_argument("--backend", choices=BACKENDS, help="where trials run")
    p.add_argument("--ray-address", help="join a running Ray cluster: auto or HOST:PORT")
    p.add_argument("--workers", type=int, help="trials at once (local processes or Ray)")
    p.add_argument("--storage", help="Optuna storage URL (default: each spec's)")


def _progress_line(state) -> str:
    best = "-" if state.best_map is None else f"{state.best_map:.3f}"
    small = "-" if state.smallest_front_bytes is None else kib(state.smallest_front_bytes)
    extra = f", {state.failed} failed" if state.failed else ""
    extra += f", {state.pruned} pruned" if state.pruned else ""
    confirming = ""
    if state.confirmed or state.confirming:
        running = f", {state.confirming} running" if state.confirming else ""
        confirming = f" | confirmation runs {state.confirmed}{running}"
    return (
        f"trials {state.done}/{state.total}{extra}{confirming} | front {state.front_size} | "
        f"best mAP {best} | smallest front patch {small}"
    )


_RUN_OPTIONS = ("trials", "backend", "workers", "storage", "ray_address")


class _ProgressBoard:
    """One progress line per study: redrawn in place on a terminal, else a line per change."""

    def __init__(self, names: list[str], tty: bool):
        self.tty, self.drawn = tty, 0
        self.width = max(map(len, names)) if len(names) > 1 else 0
        self.lines = dict.fromkeys(names, "starting")

    def label(self, name: str) -> str:
        return f"{name:<{self.width}}  " if self.width else ""

    def update(self, name: str, state) -> None:
        self.lines[name] = _progress_line(state)
        if not self.tty:
            print(self.label(name) + self.lines[name], file=sys.stderr, flush=True)
            return
        up = f"\033[{self.drawn - 1}F" if self.drawn > 1 else ""
        text = "\n".join(f"{self.label(n)}{line}\033[K" for n, line in self.lines.items())
        print(f"{up}\r{text}", end="", file=sys.stderr, flush=True)
        self.drawn = len(self.lines)

    def close(self) -> None:
        if self.tty and self.drawn:
            print(file=sys.stderr)


def cmd_run(args: argparse.Namespace) -> int:
    """run or resume studies, one per task (several share the workers)

    Each study file keeps its own study, storage and resume; shell globs work
    (studies/*.toml). The workers stay busy while any study has work left: warm starts, presets
    and trials.
    """
    from spotpatch.studies import load_spec, run_answers, run_studies

    names = [load_spec(path).name for path in args.studies]
    board = _ProgressBoard(names, sys.stderr.isatty())
    try:
        options = {k: getattr(args, k) for k in _RUN_OPTIONS}
        states = run_studies(args.studies, on_progress=board.update, **options)
    except KeyboardInterrupt:
        board.close()
        print("spotpatch: stopped; run the same command again to resume", file=sys.stderr)
        return 130
    board.close()
    for name, state in states.items():
        print(board.label(name) + _progress_line(state))
    rows = [[name, *answer_cells(a, full), note] for name, (a, full, note) in
            run_answers(args.studies, storage=args.storage).items()]  # fmt: skip
    print(table(rows, ["study", *ANSWER_HEADER, "note"]))
    return 0


COMMANDS = (_add_evaluate, _add_run)
