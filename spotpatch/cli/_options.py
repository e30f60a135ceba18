"""The options the commands that read a storage share: ``--storage`` and ``--select``."""

from __future__ import annotations

import argparse

__all__ = ["add_select", "add_storage"]


def add_storage(p: argparse.ArgumentParser) -> None:
    from spotpatch._defaults import DEFAULT_STORAGE

    p.add_argument(
        "--storage",
        default=DEFAULT_STORAGE,
        help=f"Optuna storage URL (default {DEFAULT_STORAGE})",
    )


def add_select(p: argparse.ArgumentParser, what: str = "which trial's patch") -> None:
    p.add_argument(
        "--select",
        metavar="RULE",
        default=None,
        help=f"{what}, instead of the study's answer (the smallest patch within the study's "
        "tolerance of the full fine-tune, as confirmed): knee | min-map=X | max-bytes=B | "
        "within=D (of the best) | within-full=D (of the full fine-tune); mAP in [0, 1], D in "
        "mAP points",
    )
