"""Loading a dashboard page in headless Chromium: did every plot draw, with no script error?

The page marks its ``<body>`` (``data-plots-expected``, ``data-plots-drawn``, ``data-draw-ms``,
``data-js-errors``, and for the dashboard's task views ``data-task-shown``, ``data-task-ms``);
a task is chosen as a link chooses it, by the address's fragment (``#task=NAME``). Chromium's
``--dump-dom`` prints the DOM after the scripts ran, and its console log (on stderr) catches an
error thrown before the page's own handler was installed. Used by the browser test and
``benchmarks/dashboard_scale.py``; needs a ``chromium`` binary (Debian's package ``chromium``).
"""

from __future__ import annotations

import html
import re
import shutil
import subprocess
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

__all__ = ["BrowserLoad", "find_chromium", "load_in_chromium"]

_NAMES = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")
# Without the background-networking flags Chromium keeps trying hosts a closed network refuses.
_FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-extensions",
    "--enable-logging=stderr",
    "--v=0",
)


@dataclass(frozen=True)
class BrowserLoad:
    """What a headless Chromium saw when it loaded a page.

    Attributes:
        plots_expected: plots the page meant to draw (None: the marker is missing).
        plots_drawn: plots with an SVG once drawing finished (None: drawing never finished).
        errors: script errors, from the page's marker and Chromium's console log.
        draw_ms: milliseconds from navigation to the last plot drawn, by the page's clock.
        task_shown: the task view the page showed (None: a page without task views).
        task_ms: milliseconds from showing that task to its last plot drawn, by the page's
            clock (None: none shown).
        wall_seconds: wall time of the whole Chromium run (start, load, draw, dump).
        dom: the dumped DOM.
    """

    plots_expected: int | None
    plots_drawn: int | None
    errors: tuple[str, ...]
    draw_ms: int | None
    wall_seconds: float
    dom: str
    task_shown: str | None = None
    task_ms: int | None = None

    @property
    def ok(self) -> bool:
        return (
            not self.errors
            and self.plots_expected is not None
            and self.plots_drawn == self.plots_expected
        )


def find_chromium() -> str | None:
    """The path of a Chromium (or Chrome) binary on PATH, else None."""
    return next((p for p in map(shutil.which, _NAMES) if p), None)


def _body_attr(dom: str, name: str) -> str | None:
    body = re.search(r"<body\b[^>]*>", dom)
    if body is None:
        return None
    m = re.search(rf'\s{re.escape(name)}="([^"]*)"', body.group(0))
    return html.unescape(m.group(1)) if m else None


def _int(value: str | None) -> int | None:
    return int(value) if value is not None and value.strip().isdigit() else None


def _console_errors(stderr: str) -> list[str]:
    """Uncaught errors and console.error lines from Chromium's log."""
    found = []
    for line in stderr.splitlines():
        if "CONSOLE" in line and ("Uncaught" in line or ":ERROR:CONSOLE" in line):
            found.append(line.strip())
    return found


def load_in_chromium(
    page: str | Path,
    *,
    task: str | None = None,
    chromium: str | None = None,
    timeout: float = 120.0,
    budget_ms: int = 30_000,
) -> BrowserLoad:
    """Load ``page`` (a file) in headless Chromium and read the page's drawing markers.

    Args:
        page: the HTML file.
        task: the dashboard's task view to show, given in the address (``#task=NAME``), as a
            link or the page's list chooses it (None: the page's first).
        chromium: the binary (default: :func:`find_chromium`).
        timeout: seconds before the Chromium run is killed.
        budget_ms: virtual time Chromium gives the page's scripts before dumping the DOM (0:
            dump right after the load event).

    Raises:
        FileNotFoundError: no Chromium binary.
        subprocess.TimeoutExpired: Chromium ran past ``timeout``.
    """
    binary = chromium or find_chromium()
    if binary is None:
        raise FileNotFoundError("no chromium binary on PATH (Debian: apt-get install chromium)")
    url = Path(page).resolve().as_uri()
    if task is not None:
        from spotpatch.dashboard import task_link

        url += task_link(task)
    with tempfile.TemporaryDirectory(prefix="spotpatch-chromium-") as profile:
        start = time.perf_counter()
        run = subprocess.run(
            [
                binary,
                *_FLAGS,
                f"--user-data-dir={profile}",
                *([f"--virtual-time-budget={budget_ms}"] if budget_ms > 0 else []),
                "--dump-dom",
                url,
            ],
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )
        wall = time.perf_counter() - start
    dom = run.stdout
    errors = [e for e in (_body_attr(dom, "data-js-errors") or "").split(" | ") if e]
    errors += _console_errors(run.stderr)
    if run.returncode != 0:
        errors.append(f"chromium exited with status {run.returncode}: {run.stderr[-500:]}")
    return BrowserLoad(
        plots_expected=_int(_body_attr(dom, "data-plots-expected")),
        plots_drawn=_int(_body_attr(dom, "data-plots-drawn")),
        errors=tuple(errors),
        draw_ms=_int(_body_attr(dom, "data-draw-ms")),
        wall_seconds=wall,
        dom=dom,
        task_shown=_body_attr(dom, "data-task-shown"),
        task_ms=_int(_body_attr(dom, "data-task-ms")),
    )
