"""The demo behind ``make demo``: the whole story on the embedded default (SQLite, local).

It writes the bundled benchmark, runs a warm-started study on a near, a middle and a far task
with a small budget, then draws the dashboard, exports each task's chosen patch and plans the
fleet under a byte budget. Each step is the ``spotpatch`` command a user would type, printed
before it runs. Everything resumes: running the demo again reuses what is done.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

from spotpatch.benchmark import BENCHMARK_TASKS, write_benchmark

__all__ = ["run_demo", "DEMO_TASKS", "DEMO_STEPS", "DEMO_TRIALS", "DEMO_BUDGET", "DEMO_RULE"]

#: Near, middle and far transfer from the base's source set.
DEMO_TASKS = {"shapes-subset": "near", "textured": "middle", "glyphs": "far"}
#: Training steps per trial and trials per study (the fixed head and full recipes included).
DEMO_STEPS = 150
DEMO_TRIALS = 12
#: The fleet plan's total byte budget for the three patches.
DEMO_BUDGET = "1MiB"
#: How the dashboard and the exports pick each task's patch: where more bytes stop paying.
DEMO_RULE = "knee"


def _say(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


def ensure_benchmark(out: Path) -> Path:
    """The bundled benchmark under ``out/bench``, written once."""
    bench = out / "bench"
    if (bench / "studies").is_dir() and all(
        (bench / "studies" / f"{t.name}.toml").is_file() for t in BENCHMARK_TASKS
    ):
        _say(f"[demo] using the benchmark in {bench}")
        return bench
    _say(f"[demo] writing the bundled benchmark to {bench}")
    return write_benchmark(bench, overwrite=True)


def demo_spec(bench: Path, name: str, out: Path, storage: str) -> Path:
    """The demo's study file for a bundled task: its benchmark spec with a small budget and
    the ``head`` and ``full`` recipes as reference trials."""
    text = (bench / "studies" / f"{name}.toml").read_text()
    changes = {
        '"../tasks/': '"../bench/tasks/',
        "steps = 300": f"steps = {DEMO_STEPS}",
        "trials = 24": f"trials = {DEMO_TRIALS}",
        'storage = "sqlite:///spotpatch.db"': (
            f'storage = "{storage}"\npresets = ["head", "full"]'
        ),
    }
    for old, new in changes.items():
        if old not in text:
            raise RuntimeError(f"unexpected benchmark spec for {name}: no {old!r}")
        text = text.replace(old, new)
    path = out / "studies" / f"{name}.toml"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


def run_demo(out: Path) -> int:
    """Run the demo in ``out``; returns the exit status of the first failing step, else 0."""
    from spotpatch.cli import main

    start = time.perf_counter()
    out = Path(out).resolve()
    bench = ensure_benchmark(out)
    storage = f"sqlite:///{out / 'spotpatch.db'}"
    steps: list[list[str]] = []
    for name in DEMO_TASKS:
        steps.append(["run", str(demo_spec(bench, name, out, storage))])
    steps.append(["status", "--storage", storage])
    report = str(out / "report.html")
    steps.append(["dashboard", "--storage", storage, "--select", DEMO_RULE, "--out", report])
    for name in DEMO_TASKS:
        patch = str(out / "patches" / name)
        steps.append(["export", name, "--storage", storage, "--select", DEMO_RULE, "--out", patch])
    steps.append(["plan", "--budget", DEMO_BUDGET, "--storage", storage])
    for i, argv in enumerate(steps, 1):
        _say(f"\n[demo {i}/{len(steps)}] spotpatch {' '.join(argv)}")
        code = main(argv)
        if code:
            return code
    _say(
        f"\n[demo] done in {time.perf_counter() - start:.0f} s: open {out / 'report.html'}; "
        f"patches in {out / 'patches'}"
    )
    return 0
