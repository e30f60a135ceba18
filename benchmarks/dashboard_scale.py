"""The dashboard and the report at scale: 35 synthetic studies x 1,000 trials (no training).

Run: ``.venv/bin/python benchmarks/dashboard_scale.py [--studies 35] [--trials 1000] [--runs 3]
[--keep DIR] [--out benchmarks/results/dashboard_scale.json]``

Builds ``--studies`` synthetic studies (``spotpatch.testing.synthetic_study``, every completed
trial with its patch tensors, 5 failed trials each, every other study warm-started) on /dev/shm
where there is one, then measures:

- the dashboard: reading the studies into its records, drawing them into the page, the page's
  size (and how much of it is plotly.js), and headless Chromium loading it, by the page's own
  clock: from navigation to the last plot drawn, for the page as it opens (the views across
  studies and the first task's), and for a task chosen by its address (``#task=NAME``, the
  code path of the page's task list): from the choice to that task's last plot;
- the report (``spotpatch report``'s work: :func:`spotpatch.studies.fleet_report`, then its
  Markdown and its HTML page): time, size, lines, and its page's load in Chromium.

Chromium numbers are medians over ``--runs`` loads, with the machine's load average beside
them (the page's clock counts time shared with other processes). The setup is reported but is
no part of the cost. ``--keep DIR`` builds the studies in DIR, or reuses those it holds (as
many studies of as many trials as asked). Prints a table and writes the numbers to ``--out``.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import statistics
import tempfile
import time
from contextlib import ExitStack
from pathlib import Path

from spotpatch.dashboard import dashboard_data, render_dashboard, write_report_html
from spotpatch.studies import fleet_report, open_storage, report_markdown
from spotpatch.testing import BrowserLoad, find_chromium, load_in_chromium, synthetic_study

GOAL_MB, GOAL_S = 12.0, 3.0


def _studies(root: Path, count: int, trials: int) -> tuple[object, float | None]:
    """The storage of ``count`` synthetic studies in ``root``, built unless already there, and
    the seconds building them took (None: reused)."""
    url = f"sqlite:///{root / 'studies.db'}"
    if (root / "studies.db").is_file():
        storage = open_storage(url, existing=True)
        names = [s.study_name for s in storage.get_all_studies()]
        if len(names) != count:
            raise SystemExit(f"{root} holds {len(names)} studies, not {count}")
        return storage, None
    storage = open_storage(url)
    start = time.perf_counter()
    for i in range(count):
        synthetic_study(
            storage,
            f"task-{i}",
            trials=trials,
            seed=i,
            warm_start=i % 2 == 0,
            failed=5,
            artifacts=root / "artifacts",
        )
    return storage, time.perf_counter() - start


def _loads(page: Path, chromium: str, runs: int, task: str | None = None) -> list[BrowserLoad]:
    loads = [load_in_chromium(page, task=task, chromium=chromium) for _ in range(runs)]
    bad = [load for load in loads if not load.ok]
    if bad:
        raise SystemExit(f"{page.name} did not draw: {bad[0].errors}")
    if task is not None and any(load.task_shown != task for load in loads):
        raise SystemExit(f"{page.name} did not show {task}: {loads[0].task_shown}")
    return loads


def _median(values) -> float:
    return float(statistics.median(values))


def measure(root: Path, args: argparse.Namespace) -> dict:
    from plotly.offline import get_plotlyjs

    storage, setup = _studies(root, args.studies, args.trials)
    start = time.perf_counter()
    data = dashboard_data(storage)
    read = time.perf_counter() - start
    done = {p.done for p in data.studies}
    if done != {args.trials}:
        raise SystemExit(f"the studies hold {sorted(done)} completed trials, not {args.trials}")
    start = time.perf_counter()
    text = render_dashboard(data)
    render = time.perf_counter() - start
    page = root / "dashboard.html"
    page.write_text(text, encoding="utf-8")
    deferred = re.findall(r"<script[^>]*data-deferred[^>]*>.*?</script>", text, re.S)

    start = time.perf_counter()
    report = fleet_report(storage)
    markdown = report_markdown(report)
    report_seconds = time.perf_counter() - start
    start = time.perf_counter()
    report_page = write_report_html(report, root / "report.html")
    report_html_seconds = time.perf_counter() - start

    result = {
        "studies": args.studies,
        "trials": args.trials,
        "setup_seconds": setup,
        "dashboard": {
            "read_seconds": read,
            "render_seconds": render,
            "bytes": page.stat().st_size,
            "plotly_js_bytes": len(get_plotlyjs().encode("utf-8")),
            "task_views_bytes": sum(len(b.encode("utf-8")) for b in deferred),
        },
        "report": {
            "seconds": report_seconds,
            "markdown_bytes": len(markdown.encode("utf-8")),
            "markdown_lines": markdown.count("\n"),
            "html_seconds": report_html_seconds,
            "html_bytes": report_page.stat().st_size,
        },
        "chromium": None,
    }
    chromium = find_chromium()
    if chromium is not None:
        # The machine's load while Chromium runs: the page's clock counts time shared with it.
        load_average = os.getloadavg()[0]
        opened = _loads(page, chromium, args.runs)
        task = data.studies[len(data.studies) // 2].name
        chosen = _loads(page, chromium, args.runs, task=task)
        report_loads = _loads(report_page, chromium, args.runs)
        result["chromium"] = {
            "runs": args.runs,
            "load_average_1min": round(load_average, 2),
            "opened": {
                "plots": opened[0].plots_drawn,
                "draw_seconds": _median(load.draw_ms for load in opened) / 1000,
                "first_task_seconds": _median(load.task_ms for load in opened) / 1000,
                "wall_seconds": _median(load.wall_seconds for load in opened),
            },
            "task_chosen": {
                "task": task,
                "plots": chosen[0].plots_drawn,
                "task_seconds": _median(load.task_ms for load in chosen) / 1000,
                "draw_seconds": _median(load.draw_ms for load in chosen) / 1000,
            },
            "report_draw_seconds": _median(load.draw_ms for load in report_loads) / 1000,
        }
    return result


def _rows(r: dict) -> list[tuple[str, str]]:
    d, rep, c = r["dashboard"], r["report"], r["chromium"]
    setup = "reused" if r["setup_seconds"] is None else f"{r['setup_seconds']:.0f} s"
    rows = [
        ("studies x completed trials", f"{r['studies']} x {r['trials']}"),
        ("setup (synthetic studies, not the dashboard)", setup),
        ("dashboard: read studies -> records", f"{d['read_seconds']:.2f} s"),
        ("dashboard: records -> HTML page", f"{d['render_seconds']:.2f} s"),
        (
            f"dashboard: HTML size (goal < {GOAL_MB:g} MB)",
            f"{d['bytes'] / 1e6:.2f} MB (plotly.js {d['plotly_js_bytes'] / 1e6:.2f} MB, "
            f"task views {d['task_views_bytes'] / 1e6:.2f} MB)",
        ),
        ("report: studies -> report and its Markdown", f"{rep['seconds']:.2f} s"),
        (
            "report: Markdown",
            f"{rep['markdown_bytes'] / 1e3:.1f} kB, {rep['markdown_lines']} lines",
        ),
        (
            "report: HTML page",
            f"{rep['html_seconds']:.2f} s, {rep['html_bytes'] / 1e6:.2f} MB",
        ),
    ]
    if c is None:
        return [*rows, ("headless Chromium", "not installed: skipped")]
    o, t = c["opened"], c["task_chosen"]
    runs = c["runs"]
    return [
        *rows,
        ("load average (1 min) before the Chromium loads", f"{c['load_average_1min']:.1f}"),
        ("dashboard opened: plots drawn", str(o["plots"])),
        (
            f"dashboard opened: navigation -> last plot (goal < {GOAL_S:g} s, median of {runs})",
            f"{o['draw_seconds']:.2f} s (the first task's plots {o['first_task_seconds']:.2f} s)",
        ),
        ("dashboard opened: Chromium --dump-dom wall time", f"{o['wall_seconds']:.2f} s"),
        (
            f"task chosen ({t['task']}): choice -> its last plot (median of {runs})",
            f"{t['task_seconds']:.2f} s ({t['plots']} plots on the page, "
            f"navigation -> last plot {t['draw_seconds']:.2f} s)",
        ),
        ("report page: navigation -> last plot", f"{c['report_draw_seconds']:.2f} s"),
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--studies", type=int, default=35)
    parser.add_argument("--trials", type=int, default=1000, help="completed trials per study")
    parser.add_argument("--runs", type=int, default=3, help="Chromium loads (median reported)")
    parser.add_argument("--keep", type=Path, help="build the studies here, or reuse them")
    parser.add_argument(
        "--out", type=Path, default=Path("benchmarks/results/dashboard_scale.json")
    )
    args = parser.parse_args()

    with ExitStack() as stack:
        if args.keep is not None:
            args.keep.mkdir(parents=True, exist_ok=True)
            root = args.keep
        else:
            # On tmpfs where there is one: Optuna commits each added trial; fsyncs dominate.
            shm = Path("/dev/shm")
            where = str(shm) if shm.is_dir() else None
            root = Path(
                stack.enter_context(
                    tempfile.TemporaryDirectory(prefix="spotpatch-dash-bench-", dir=where)
                )
            )
        result = measure(root, args)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    rows = _rows(result)
    width = max(len(k) for k, _ in rows)
    print(f"{'measure'.ljust(width)}  value")
    print(f"{'-' * width}  -----")
    for key, value in rows:
        print(f"{key.ljust(width)}  {value}")


if __name__ == "__main__":
    main()
