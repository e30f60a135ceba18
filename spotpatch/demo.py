"""The demo behind ``make demo``: the whole story on the embedded default (SQLite, local).

It writes the bundled benchmark, runs a warm-started study on a near, a middle and a far task
with a small budget (each confirms its answer on fresh seeds, as the bundled specs do), then
draws the dashboard, exports each task's answer, bundles the three for a device and plans the
fleet under a byte budget.
:func:`demo_steps` prepares the files and returns the steps, each the ``spotpatch`` command a
user would type; the CLI's ``demo`` command prints each step and runs it. Everything resumes:
running the demo again reuses what is done.

Imports from ``studies`` (the spec reader and writer) and ``benchmark``; never from the CLI.
"""

from __future__ import annotations

import sys
from dataclasses import replace
from pathlib import Path

from spotpatch.benchmark import BENCHMARK_TASKS, write_benchmark
from spotpatch.studies import load_spec, write_spec

__all__ = [
    "DEMO_BUDGET",
    "DEMO_PRESETS",
    "DEMO_STEPS",
    "DEMO_TASKS",
    "DEMO_TRIALS",
    "demo_spec",
    "demo_steps",
    "demo_summary",
]

#: Near, middle and far transfer from the base's source set.
DEMO_TASKS = {"shapes-subset": "near", "textured": "middle", "glyphs": "far"}
#: Training steps per trial and trials per study (the fixed head and full recipes included).
DEMO_STEPS = 150
DEMO_TRIALS = 12
#: The fixed recipes each study runs first, as reference points on its front.
DEMO_PRESETS = ("head", "full")
#: The demo's sampler: at 12 trials the benchmark's ``descent`` (which walks down from the full
#: fine-tune, one stage per trial) would spend the demo's few trials near the full detector.
DEMO_SAMPLER = "neighbours"
#: The fleet plan's total byte budget for the three patches.
DEMO_BUDGET = "1MiB"


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
    """The demo's study file for a bundled task, ``out/studies/NAME.toml``: its benchmark spec
    with the demo's budget and storage and the ``head`` and ``full`` recipes run first."""
    spec = load_spec(bench / "studies" / f"{name}.toml")
    spec = replace(
        spec,
        train=replace(spec.train, steps=DEMO_STEPS),
        search=replace(
            spec.search,
            trials=DEMO_TRIALS,
            storage=storage,
            presets=DEMO_PRESETS,
            sampler=DEMO_SAMPLER,
        ),
    )
    comment = (
        f'The demo\'s study of the bundled benchmark task "{name}": {DEMO_TRIALS} trials of '
        f"{DEMO_STEPS} steps, {' and '.join(DEMO_PRESETS)} first"
    )
    return write_spec(spec, out / "studies" / f"{name}.toml", comment=comment)


def demo_steps(out: Path) -> list[list[str]]:
    """Prepare the demo in ``out`` (the benchmark, one study file per task); returns its steps.

    Args:
        out: The demo's working folder.

    Returns:
        The steps in order, each the arguments of one ``spotpatch`` command: run each study,
        status, the dashboard, one export per task (its answer), the device bundle of the
        three answers, the fleet plan.
    """
    out = Path(out).resolve()
    bench = ensure_benchmark(out)
    storage = f"sqlite:///{out / 'spotpatch.db'}"
    steps: list[list[str]] = []
    for name in DEMO_TASKS:
        steps.append(["run", str(demo_spec(bench, name, out, storage))])
    steps.append(["status", "--storage", storage])
    report = str(out / "report.html")
    steps.append(["dashboard", "--storage", storage, "--out", report])
    for name in DEMO_TASKS:
        steps.append(["export", name, "--storage", storage, "--out", str(out / "patches" / name)])
    steps.append(["bundle", "--storage", storage, "--out", str(out / "bundle")])
    steps.append(["plan", "--budget", DEMO_BUDGET, "--storage", storage])
    return steps


def demo_summary(out: Path, seconds: float) -> str:
    """The demo's last line: how long it took and where its results are."""
    out = Path(out).resolve()
    return (
        f"\n[demo] done in {seconds:.0f} s: open {out / 'report.html'}; "
        f"patches in {out / 'patches'}; the device bundle in {out / 'bundle'}"
    )
