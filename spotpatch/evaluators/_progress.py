"""Progress bars for long work: shown on a terminal, silent elsewhere (logs, CI, pipes)."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

__all__ = ["progress_bar"]


def progress_bar(
    iterable: Iterable | None = None,
    *,
    desc: str,
    total: int | None = None,
    unit: str = "it",
    progress: bool | None = None,
    leave: bool = False,
) -> Any:
    """A tqdm bar on stderr.

    Args:
        progress: True always shows it, False never, None only when stderr is a terminal.
    """
    from tqdm.auto import tqdm

    disable = None if progress is None else not progress
    return tqdm(
        iterable,
        desc=desc,
        total=total,
        unit=unit,
        leave=leave,
        disable=disable,
        dynamic_ncols=True,
    )
