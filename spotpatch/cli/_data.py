"""The commands that make data and bases: ``demo-data`` and ``pretrain``."""

from __future__ import annotations

import argparse
from pathlib import Path

from spotpatch.cli._command import command

__all__ = ["COMMANDS"]


def _add_demo_data(sub: argparse._SubParsersAction) -> None:
    p = command(sub, cmd_demo_data)
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


def cmd_demo_data(args: argparse.Namespace) -> int:
    """write the bundled benchmark: a source set, 10 tasks and a study spec per task"""
    from spotpatch.benchmark import write_benchmark

    out = write_benchmark(
        args.out, seed=args.seed, scale=args.scale, tasks=args.tasks or None, overwrite=args.force
    )
    print(f"wrote the bundled benchmark to {out} (study specs in {out / 'studies'})")
    return 0


def _add_pretrain(sub: argparse._SubParsersAction) -> None:
    from spotpatch._defaults import PRETRAIN as DEFAULT

    p = command(sub, cmd_pretrain)
    p.add_argument(
        "--data", type=Path, required=True, help="folder with train.json, train/, val.json, val/"
    )
    p.add_argument("--out", type=Path, required=True, help="the .safetensors file to write")
    p.add_argument("--model", default="spotpatch-tiny", help="detector (default spotpatch-tiny)")
    p.add_argument("--steps", type=int, help=f"optimizer steps (default {DEFAULT['steps']})")
    p.add_argument(
        "--batch-size", type=int, help=f"images per step (default {DEFAULT['batch_size']})"
    )
    p.add_argument("--lr", type=float, help=f"peak learning rate (default {DEFAULT['lr']:g})")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--device", default="auto", help="auto (default), cpu, cuda...")


def cmd_pretrain(args: argparse.Namespace) -> int:
    """train a base detector on a COCO set"""
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


COMMANDS = (_add_demo_data, _add_pretrain)
