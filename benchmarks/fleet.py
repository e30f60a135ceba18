"""A fleet of 35 studies through ``spotpatch run``: wall time, trials per minute, the driver's
CPU share and memory, the lines of progress it prints, and how long ``status``, ``report``,
``plan`` and ``dashboard`` take for 35 studies.

Run: ``.venv/bin/python benchmarks/fleet.py [--work runs/fleet] [--trials 4] [--steps 20]
[--backends local ray] [--workers 2] [--out benchmarks/results/fleet.json]``

The studies: the ten bundled tasks rendered with benchmark seeds 0, 1, 2 and 3 (each rendering
different images) at ``--scale`` 0.25, 35 of the 40 (seed 3: its first five tasks), so that
each study reads data of its own. Each is its rendering's study file with its own name
(``TASK-sSEED``) and seed (3,000,000 on), and a tiny budget: ``--trials`` trials of ``--steps``
steps, the ``head`` and ``full`` presets among them, no warm start, one run per config, no
confirmation. Per backend, from an empty storage:

- ``python -m spotpatch run ... --workers K`` as a child process, its output to files (not a
  terminal: the compact view's log). Every ``--sample`` seconds the script reads ``/proc`` for
  the driver and every process under it: the driver's CPU seconds (its threads), its peak
  RSS (``VmHWM``), the largest peak RSS of any process under it (a worker) and the largest sum
  of the RSS of all of them at one time;
- trials per minute: the trials the studies finished (counted in the storage) over the wall
  time of the whole command (set-up, workers starting, the answers printed);
- each summary line's time left against the time the run took after it;
- ``status``, ``report``, ``plan --budget`` (the answers' bytes together) and ``dashboard
  --out`` on the 35 studies, each as a command (Python's start included), the median of three.

Prints Markdown tables and writes everything to ``--out``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import shutil
import statistics
import subprocess
import sys
import time
from dataclasses import replace
from pathlib import Path

from spotpatch.benchmark import BENCHMARK_TASKS, write_benchmark
from spotpatch.studies import load_spec, write_spec

SEEDS = (0, 1, 2, 3)
STUDIES = 35
PAGE = os.sysconf("SC_PAGE_SIZE")
TICK = os.sysconf("SC_CLK_TCK")


def write_fleet(work: Path, *, scale: float, trials: int, steps: int, url: str) -> list[Path]:
    """The 35 study files (see the module's docstring), rendering what is missing."""
    names = [task.name for task in BENCHMARK_TASKS]
    files = []
    for seed in SEEDS:
        bench = work / f"bench-s{seed}"
        if not (bench / "studies").is_dir():
            write_benchmark(bench, seed=seed, scale=scale, progress=False)
        for name in names:
            if len(files) == STUDIES:
                break
            spec = load_spec(bench / "studies" / f"{name}.toml")
            spec = replace(
                spec,
                name=f"{name}-s{seed}",
                seed=3_000_000 + 1000 * len(files),
                train=replace(spec.train, steps=steps),
                search=replace(
                    spec.search,
                    trials=trials,
                    presets=("head", "full"),
                    warm_start="none",
                    repeats=1,
                    confirm_seeds=0,
                    storage=url,
                ),
            )
            files.append(write_spec(spec, work / "studies" / f"{spec.name}.toml"))
    return files


def _proc(pid: int) -> tuple[int, float, int, int] | None:
    """(parent pid, CPU seconds, RSS bytes, peak RSS bytes) of a live process."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
        status = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return None
    fields = stat[stat.rindex(")") + 2 :].split()
    kib = {k: int(v.split()[0]) for k, v in re.findall(r"^(VmRSS|VmHWM):\s+(.*)$", status, re.M)}
    cpu = (int(fields[11]) + int(fields[12])) / TICK
    return int(fields[1]), cpu, kib.get("VmRSS", 0) * 1024, kib.get("VmHWM", 0) * 1024


def _tree(root: int) -> dict[int, tuple]:
    """The process ``root`` and every process under it."""
    procs = {int(p.name): _proc(int(p.name)) for p in Path("/proc").iterdir() if p.name.isdigit()}
    procs = {pid: info for pid, info in procs.items() if info is not None}
    tree, frontier = {}, [root]
    while frontier:
        pid = frontier.pop()
        if pid in procs:
            tree[pid] = procs[pid]
            frontier += [child for child, info in procs.items() if info[0] == pid]
    return tree


def run_fleet(files: list[Path], work: Path, backend: str, workers: int, sample: float) -> dict:
    """``spotpatch run`` of the fleet as a child process, watched through ``/proc``."""
    cmd = [sys.executable, "-m", "spotpatch", "run", *map(str, files), "--workers", str(workers)]
    cmd += ["--backend", backend]
    out, err = work / f"run-{backend}.out", work / f"run-{backend}.err"
    load = os.getloadavg()[0]
    started = time.monotonic()
    with open(out, "w") as o, open(err, "w") as e:
        proc = subprocess.Popen(cmd, stdout=o, stderr=e, cwd=work)
    driver_cpu = driver_peak = worker_peak = total_peak = 0
    while proc.poll() is None:
        tree = _tree(proc.pid)
        if proc.pid in tree:  # an exited driver not yet reaped reads as no memory
            driver_cpu = max(driver_cpu, tree[proc.pid][1])
            driver_peak = max(driver_peak, tree[proc.pid][3])
        worker_peak = max([worker_peak] + [t[3] for pid, t in tree.items() if pid != proc.pid])
        total_peak = max(total_peak, sum(t[2] for t in tree.values()))
        time.sleep(sample)
    wall = time.monotonic() - started
    if proc.returncode != 0:
        raise SystemExit(f"spotpatch run failed ({proc.returncode}): {err.read_text()[-2000:]}")
    lines = err.read_text().splitlines()
    return {
        "backend": backend,
        "workers": workers,
        "command": " ".join(["spotpatch", "run", "STUDIES...", *cmd[4 + len(files) :]]),
        "wall_seconds": round(wall, 1),
        "driver_cpu_seconds": round(driver_cpu, 1),
        "driver_cpu_share": round(driver_cpu / wall, 3),
        "driver_peak_rss_mib": round(driver_peak / 2**20),
        "largest_worker_peak_rss_mib": round(worker_peak / 2**20),
        "all_processes_peak_rss_mib": round(total_peak / 2**20),
        "progress_lines": len(lines),
        "progress_lines_of_spotpatch": sum(
            line.startswith("studies ") or line.split(" ")[0] in _names(files) for line in lines
        ),
        "time_left_predictions": _predictions(lines, wall),
        "load_average_before": round(load, 2),
        "load_average_after": round(os.getloadavg()[0], 2),
    }


def _names(files: list[Path]) -> set[str]:
    return {f.stem for f in files}


def _predictions(lines: list[str], wall: float) -> list[dict]:
    """Each summary line's time left, against what the run took after it (its last seconds
    print the answers, which the estimate leaves out)."""
    out = []
    for line in lines:
        m = re.search(r"(\d+):(\d\d) elapsed, about (\d+):(\d\d) left", line)
        if m:
            elapsed = int(m[1]) * 60 + int(m[2])
            out.append({"elapsed": elapsed, "left": int(m[3]) * 60 + int(m[4]),
                        "took": round(wall - elapsed)})  # fmt: skip
    return out


def _median_seconds(cmd: list[str], cwd: Path, repeats: int = 3) -> float:
    times = []
    for _ in range(repeats):
        started = time.monotonic()
        subprocess.run(cmd, cwd=cwd, check=True, capture_output=True)
        times.append(time.monotonic() - started)
    return round(statistics.median(times), 2)


def reading_commands(url: str, work: Path) -> dict:
    spotpatch = [sys.executable, "-m", "spotpatch"]
    status = subprocess.run([*spotpatch, "status", "--storage", url, "--json"], cwd=work,
                            check=True, capture_output=True, text=True).stdout  # fmt: skip
    studies = json.loads(status[status.index("[") :])
    budget = sum(s["answer"]["patch_bytes"] for s in studies if s["answer"])
    commands = {
        "status": ["status", "--storage", url],
        "report": ["report", "--storage", url],
        "plan": ["plan", "--storage", url, "--budget", str(budget)],
        "dashboard": ["dashboard", "--storage", url, "--out", str(work / "fleet.html")],
    }
    seconds = {name: _median_seconds([*spotpatch, *cmd], work) for name, cmd in commands.items()}
    return {
        "studies": len(studies),
        "trials": sum(s["done"] for s in studies),
        "failed": sum(s["failed"] for s in studies),
        "answers": sum(s["answer"] is not None for s in studies),
        "seconds": seconds,
        "dashboard_mb": round((work / "fleet.html").stat().st_size / 1e6, 2),
    }


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--work", type=Path, default=Path("runs/fleet"))
    p.add_argument("--scale", type=float, default=0.25)
    p.add_argument("--trials", type=int, default=4)
    p.add_argument("--steps", type=int, default=20)
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--backends", nargs="+", default=["local", "ray"], choices=["local", "ray"])
    p.add_argument("--sample", type=float, default=0.2, help="seconds between /proc reads")
    p.add_argument("--out", type=Path, default=Path("benchmarks/results/fleet.json"))
    args = p.parse_args()
    work = args.work.resolve()
    work.mkdir(parents=True, exist_ok=True)
    runs = []
    for backend in args.backends:
        db = work / f"fleet-{backend}.db"
        db.unlink(missing_ok=True)
        shutil.rmtree(work / f"fleet-{backend}-artifacts", ignore_errors=True)
        url = f"sqlite:///{db}"
        files = write_fleet(work, scale=args.scale, trials=args.trials, steps=args.steps,
                            url=url)  # fmt: skip
        run = run_fleet(files, work, backend, args.workers, args.sample)
        run["reading"] = reading_commands(url, work)
        run["trials_per_minute"] = round(run["reading"]["trials"] / run["wall_seconds"] * 60, 1)
        runs.append(run)
        print(json.dumps(run, indent=2), flush=True)
    result = {
        "command": " ".join(["python", "benchmarks/fleet.py", *sys.argv[1:]]),
        "studies": STUDIES,
        "scale": args.scale,
        "trials_per_study": args.trials,
        "steps": args.steps,
        "cpus": os.cpu_count(),
        "cpu": platform.processor() or platform.machine(),
        "runs": runs,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print("| backend | wall | trials | trials/min | driver CPU | driver peak RSS | "
          "worker peak RSS | all RSS | progress lines |")  # fmt: skip
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|")
    for r in runs:
        print(f"| {r['backend']} | {r['wall_seconds']:.0f} s | {r['reading']['trials']} | "
              f"{r['trials_per_minute']} | {100 * r['driver_cpu_share']:.0f} % | "
              f"{r['driver_peak_rss_mib']} MiB | {r['largest_worker_peak_rss_mib']} MiB | "
              f"{r['all_processes_peak_rss_mib']} MiB | {r['progress_lines']} |")  # fmt: skip
    print("\n| backend | status | report | plan | dashboard |\n|---|---:|---:|---:|---:|")
    for r in runs:
        s = r["reading"]["seconds"]
        print(f"| {r['backend']} | {s['status']} s | {s['report']} s | {s['plan']} s | "
              f"{s['dashboard']} s |")  # fmt: skip


if __name__ == "__main__":
    main()
