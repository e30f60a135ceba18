"""The ``spotpatch`` command: parse, call one function of a room, print.

Each command is a pair, side by side: ``_add_<command>(sub)`` declares its arguments and
``cmd_<command>(args)`` runs it. ``_data`` holds the commands that make data and bases
(``demo-data``, ``pretrain``), ``_trials`` those that train (``evaluate``, ``run``), ``_studies``
those about each study's answer (``status``, ``confirm``, ``report``, ``plan``), ``_patches``
those that write and use patches (``export``, ``predict``, ``dashboard``), ``_options`` the
options they share, ``_text`` how they print, and ``_main`` the parser, ``main`` and ``demo``.
Choices and defaults come from ``spotpatch._defaults``; the rooms are imported where they are
used, so building the parser imports no room. May import every room; no room imports it.
"""

from __future__ import annotations

from spotpatch.cli._main import build_parser, main

__all__ = ["build_parser", "main"]
