"""Declaring a command from its handler: name, help and description come from ``cmd_<name>``.

A handler's docstring is its documentation on the command line: the first line is the help in
``spotpatch --help``, the paragraphs after it the description in ``spotpatch NAME --help``.
"""

from __future__ import annotations

import argparse
import inspect
from collections.abc import Callable

__all__ = ["command"]


def command(
    sub: argparse._SubParsersAction, handler: Callable[[argparse.Namespace], int]
) -> argparse.ArgumentParser:
    """The sub-parser of ``handler`` (``cmd_demo_data`` is ``demo-data``), which it runs."""
    name = handler.__name__.removeprefix("cmd_").replace("_", "-")
    summary, _, rest = inspect.cleandoc(handler.__doc__ or "").partition("\n")
    description = " ".join(rest.split()) or None
    parser = sub.add_parser(name, help=summary, description=description)
    parser.set_defaults(func=handler)
    return parser
