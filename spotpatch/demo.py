"""The demo behind ``make demo``: the bundled benchmark, then fixed presets on two tasks.

Everything runs on the embedded default (SQLite storage, local workers) and needs no network.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

from spotpatch.evaluators import BENCHMARK_TASKS, write_benchmark
from spotpatch.studies import evaluate_spec

__all__ = ["run_demo", "DEMO_TASKS"]

#: One near and one far task: the presets' gap grows with the distance from the source.
DEMO_TASKS = ("shapes-subset", "glyphs")


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


def run_demo(out: Path) -> list[dict]:
    """Write the benchmark, evaluate ``head`` and ``full`` on two tasks, print a table."""
    start = time.perf_counter()
    bench = ensure_benchmark(Path(out))
    rows = []
    for name in DEMO_TASKS:
        for preset in ("head", "full"):
            _say(f"[demo] {name}: training the {preset} patch")
            result, evaluator = evaluate_spec(bench / "studies" / f"{name}.toml", preset=preset)
            rows.append(
                {
                    "task": name,
                    "preset": preset,
                    "map": result.map,
                    "patch_bytes": result.patch_bytes,
                    "train_seconds": result.train_seconds,
                }
            )
    print(f"{'task':<16}{'preset':<8}{'val mAP':>9}{'patch':>14}{'train s':>9}")
    for r in rows:
        print(
            f"{r['task']:<16}{r['preset']:<8}{r['map']:>9.3f}"
            f"{r['patch_bytes'] / 1024:>10,.1f} KiB{r['train_seconds']:>9.1f}"
        )
    _say(f"[demo] done in {time.perf_counter() - start:.0f} s")
    return rows
