"""The commands that train: ``evaluate`` one config and ``run`` a study."""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import shutil
import sys
import time
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


_PROGRESS_HEADER = ["study", "trials", "failed", "pruned", "front", "best mAP",
                    "smallest front patch", "confirmation runs"]  # fmt: skip


def _progress_cells(name: str, state) -> list[str]:
    best = "-" if state.best_map is None else f"{state.best_map:.3f}"
    small = "-" if state.smallest_front_bytes is None else kib(state.smallest_front_bytes)
    counts = (state.failed, state.pruned, state.front_size, best, small, state.confirmed)
    return [name, f"{state.done}/{state.total}", *map(str, counts)]


def _duration(seconds: float) -> str:
    """``M:SS``, or ``H:MM:SS`` from an hour on."""
    whole = round(seconds)
    hours, minutes, secs = whole // 3600, whole // 60 % 60, whole % 60
    return f"{hours}:{minutes:02d}:{secs:02d}" if hours else f"{minutes}:{secs:02d}"


def _summary_line(fleet, elapsed: float, working: float, done_here: int) -> str:
    """The compact view's first line: studies, trials and confirmation runs in all, the time
    so far and, at this run's pace (the seconds ``working`` since every study was opened per
    trial or confirmation run done since), the time its search trials and the confirmation
    runs it knows of still need."""
    counts = [
        f"{n} {what}" for n, what in ((fleet.failed, "failed"), (fleet.running, "running")) if n
    ]
    trials = f"trials {fleet.done}/{fleet.total}" + (f" ({', '.join(counts)})" if counts else "")
    parts = [f"studies {fleet.finished}/{fleet.studies} done", trials]
    if fleet.confirmed or fleet.confirming:
        running = f" ({fleet.confirming} running)" if fleet.confirming else ""
        parts.append(f"confirmation runs {fleet.confirmed}{running}")
    when = f"{_duration(elapsed)} elapsed"
    if fleet.work_left and done_here:
        when += f", about {_duration(working / done_here * fleet.work_left)} left"
    return " | ".join([*parts, when])


def _terminal_size() -> tuple[int, int]:
    """Columns and lines of the terminal stderr draws on."""
    try:
        size = os.get_terminal_size(sys.stderr.fileno())
    except (AttributeError, OSError, ValueError):
        size = shutil.get_terminal_size()
    return size.columns, size.lines


#: A run of more studies than this gets the compact view.
FEW_STUDIES = 8
#: Lines of studies under the summary in the compact view on a terminal.
IN_FLIGHT = 6
#: Seconds between summary lines of the compact view in a log.
SUMMARY_EVERY = 30.0

_RUN_OPTIONS = ("trials", "backend", "workers", "storage", "ray_address")


class _ProgressBoard:
    """Where the studies of a run stand, on stderr.

    A few studies (up to :data:`FEW_STUDIES`, and fewer than the terminal's lines): a line
    each, redrawn in place on a terminal, else a line per change. More: one summary line
    (studies done, trials and confirmation runs in all, elapsed, and the time left at the
    pace since every study was opened); on a terminal, under it the studies in flight
    (running a trial, else the latest to change), redrawn in place; in a log, a study's line
    when its trials are done and the summary every ``every`` seconds while it changes, so
    that the log grows with the studies and the time, not with the trials.

    ``size`` gives the terminal's (columns, lines) and ``clock`` the time: tests give theirs.
    """

    def __init__(self, names: list[str], tty: bool, *, size=_terminal_size, clock=None,
                 every: float = SUMMARY_EVERY):  # fmt: skip
        self.tty, self.size, self.every = tty, size, every
        self.clock = clock or time.monotonic
        self.started = self.clock()
        self.drawn = 0
        self.width = max(map(len, names)) if len(names) > 1 else 0
        self.lines = dict.fromkeys(names, "starting")
        self.states: dict = dict.fromkeys(names)
        self.compact = len(names) > FEW_STUDIES or (tty and len(names) + 2 > size()[1])
        self.begun: dict[str, int] = {}  # trials and confirmation runs done when first seen
        self.working: float | None = None  # when every study had been seen (opened)
        self.changed: dict[str, int] = {}  # when each study's line last changed (in ticks)
        self.ticks = 0
        self.logged: dict[str, str] = {}  # the line a finished study printed in a log
        self.summary: tuple | None = None  # the record and time of the last summary printed

    def label(self, name: str) -> str:
        return f"{name:<{self.width}}  " if self.width else ""

    def update(self, name: str, state) -> None:
        line = _progress_line(state)
        if line != self.lines[name]:
            self.ticks += 1
            self.changed[name] = self.ticks
        self.lines[name], self.states[name] = line, state
        self.begun.setdefault(name, state.done + state.confirmed)
        if self.working is None and len(self.begun) == len(self.lines):
            self.working = self.clock()
        if self.tty:
            self._draw()
        elif not self.compact:
            print(self.label(name) + line, file=sys.stderr, flush=True)
        else:
            self._log(name, state)

    def fleet_line(self) -> str:
        """The summary of every study seen so far."""
        from spotpatch.search import fleet_progress

        known = [s for s in self.states.values() if s is not None]
        fleet = dataclasses.replace(fleet_progress(known), studies=len(self.states))
        done_here = fleet.done + fleet.confirmed - sum(self.begun.values())
        now = self.clock()
        working = now - (self.started if self.working is None else self.working)
        return _summary_line(fleet, now - self.started, working, done_here)

    def _shown(self, room: int) -> list[str]:
        """The studies of the compact view: running first, then the latest to change."""

        def key(name: str) -> tuple[bool, int]:
            s = self.states[name]
            return (s is not None and bool(s.running or s.confirming), self.changed.get(name, -1))

        chosen = set(sorted(self.lines, key=key, reverse=True)[:room])
        return [n for n in self.lines if n in chosen]

    def _draw(self) -> None:
        columns, rows = self.size()
        if self.compact:
            room = max(0, min(IN_FLIGHT, len(self.lines), rows - 3))
            lines = [
                self.fleet_line(),
                *(self.label(n) + self.lines[n] for n in self._shown(room)),
            ]
        else:
            lines = [self.label(n) + line for n, line in self.lines.items()]
        # A line wider than the terminal would wrap, and the redraw climb too few lines.
        text = "\n".join(f"{line[: max(1, columns - 1)]}\033[K" for line in lines)
        up = f"\033[{self.drawn - 1}F" if self.drawn > 1 else ""
        print(f"{up}\r{text}\033[J", end="", file=sys.stderr, flush=True)
        self.drawn = len(lines)

    def _log(self, name: str, state) -> None:
        if state.finished and self.logged.get(name) != self.lines[name]:
            self.logged[name] = self.lines[name]
            print(self.label(name) + self.lines[name], file=sys.stderr, flush=True)
        now = self.clock()
        if None in self.states.values():
            return  # the totals are not known yet
        if self.summary is None or now - self.summary[1] >= self.every:
            self._log_summary(now)

    def _log_summary(self, now: float) -> None:
        from spotpatch.search import fleet_progress

        record = fleet_progress(s for s in self.states.values() if s is not None)
        if self.summary is None or record != self.summary[0]:
            print(self.fleet_line(), file=sys.stderr, flush=True)
            self.summary = (record, now)

    def close(self) -> None:
        if self.tty and self.drawn:
            print(file=sys.stderr)
        elif self.compact and not self.tty and None not in self.states.values():
            self._log_summary(self.clock())

    def final(self, states: dict) -> str:
        """Every study's progress once the run is over: a line each, or a table for many."""
        if self.compact:
            return table([_progress_cells(n, s) for n, s in states.items()], _PROGRESS_HEADER)
        return "\n".join(self.label(n) + _progress_line(s) for n, s in states.items())


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
    print(board.final(states))
    rows = [[name, *answer_cells(a, full), note] for name, (a, full, note) in
            run_answers(args.studies, storage=args.storage).items()]  # fmt: skip
    print(table(rows, ["study", *ANSWER_HEADER, "note"]))
    return 0


COMMANDS = (_add_evaluate, _add_run)
