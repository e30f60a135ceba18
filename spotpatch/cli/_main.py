"""The ``spotpatch`` parser and ``main``, and the ``demo`` command, which runs other commands."""

from __future__ import annotations

import argparse
import logging
import sys
import time
from collections.abc import Sequence
from pathlib import Path

from spotpatch import __version__
from spotpatch._errors import UserError
from spotpatch.cli import _data, _patches, _studies, _trials
from spotpatch.cli._command import command

__all__ = ["build_parser", "main"]


def _add_demo(sub: argparse._SubParsersAction) -> None:
    p = command(sub, cmd_demo)
    p.add_argument("--out", default="demo", help="working folder (default ./demo)")


def cmd_demo(args: argparse.Namespace) -> int:
    """the demo: bundled benchmark, studies on 3 tasks, dashboard, exports, fleet plan"""
    from spotpatch.demo import demo_steps, demo_summary

    start = time.perf_counter()
    steps = demo_steps(Path(args.out))
    for i, argv in enumerate(steps, 1):
        print(f"\n[demo {i}/{len(steps)}] spotpatch {' '.join(argv)}", file=sys.stderr, flush=True)
        code = main(argv)
        if code:
            return code
    print(demo_summary(Path(args.out), time.perf_counter() - start), file=sys.stderr, flush=True)
    return 0


def build_parser() -> argparse.ArgumentParser:
    """The ``spotpatch`` parser: every command, in the order ``--help`` lists them."""
    parser = argparse.ArgumentParser(
        prog="spotpatch",
        description="Find, per detection task, the smallest patch to a shared mobile detector "
        "that reaches the task's accuracy.",
    )
    parser.add_argument("--version", action="version", version=f"spotpatch {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="log more detail")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for add in (*_data.COMMANDS, *_trials.COMMANDS, *_studies.COMMANDS, *_patches.COMMANDS,
                _add_demo):  # fmt: skip
        add(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run one ``spotpatch`` command; returns its exit status (2: the user's error, 130: Ctrl-C).

    Example:
        >>> main(["status", "--storage", "sqlite:///spotpatch.db"])  # doctest: +SKIP
        0
    """
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
