"""The dashboard at scale: 3 synthetic studies x 1,000 trials (no training).

Run: ``.venv/bin/python benchmarks/dashboard_scale.py [--studies 3] [--trials 1000] [--runs 3]``

Reports the time to read the studies into the dashboard's records, to draw them into the page,
the page's size, and headless Chromium's load: the wall time of ``chromium --dump-dom`` (start,
parse, draw, dump) and the page's own clock from navigation to the last plot drawn. Chromium
numbers are medians over ``--runs`` loads; the study setup is reported but not part of the
dashboard's cost.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

from spotpatch.dashboard import dashboard_data, render_dashboard
from spotpatch.studies import open_storage
from spotpatch.testing import find_chromium, load_in_chromium, synthetic_study


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--studies", type=int, default=3)
    parser.add_argument("--trials", type=int, default=1000, help="completed trials per study")
    parser.add_argument("--runs", type=int, default=3, help="Chromium loads (median reported)")
    args = parser.parse_args()

    # On tmpfs where there is one: Optuna commits each added trial, and fsyncs dominate setup.
    shm = Path("/dev/shm")
    where = str(shm) if shm.is_dir() else None
    with tempfile.TemporaryDirectory(prefix="spotpatch-dash-bench-", dir=where) as tmp:
        root = Path(tmp)
        storage = open_storage(f"sqlite:///{root / 'studies.db'}")
        start = time.perf_counter()
        for i in range(args.studies):
            synthetic_study(
                storage,
                f"task-{i}",
                trials=args.trials,
                seed=i,
                warm_start=i % 2 == 0,
                failed=5,
                artifacts=root / "artifacts",
            )
        setup = time.perf_counter() - start

        start = time.perf_counter()
        data = dashboard_data(storage)
        read = time.perf_counter() - start
        start = time.perf_counter()
        text = render_dashboard(data)
        render = time.perf_counter() - start
        page = root / "dashboard.html"
        page.write_text(text, encoding="utf-8")
        size = page.stat().st_size

        rows = [
            ("studies x completed trials", f"{args.studies} x {args.trials}"),
            ("setup (synthetic studies, not the dashboard)", f"{setup:.1f} s"),
            ("read studies -> records", f"{read:.2f} s"),
            ("records -> HTML page", f"{render:.2f} s"),
            ("HTML size", f"{size / 1e6:.2f} MB (plotly.js ~4.8 MB of it)"),
        ]
        chromium = find_chromium()
        if chromium is None:
            rows.append(("headless Chromium", "not installed: skipped"))
        else:
            loads = [load_in_chromium(page, chromium=chromium) for _ in range(args.runs)]
            bad = [load for load in loads if not load.ok]
            if bad:
                raise SystemExit(f"the page did not draw: {bad[0].errors}")
            wall = statistics.median(load.wall_seconds for load in loads)
            draw = statistics.median(load.draw_ms or 0 for load in loads)
            rows += [
                ("plots drawn", f"{loads[0].plots_drawn} of {loads[0].plots_expected}"),
                (f"Chromium --dump-dom wall time (median of {args.runs})", f"{wall:.2f} s"),
                ("navigation -> last plot drawn (page clock)", f"{draw / 1000:.2f} s"),
            ]
    width = max(len(k) for k, _ in rows)
    print(f"{'measure'.ljust(width)}  value")
    print(f"{'-' * width}  -----")
    for key, value in rows:
        print(f"{key.ljust(width)}  {value}")


if __name__ == "__main__":
    main()
