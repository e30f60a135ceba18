"""What one trial costs the study's database: commits, writing commits and SQL statements.

Run: ``.venv/bin/python benchmarks/commits_per_trial.py [--trials 50] [--granularity block]
[--storage URL] [--label NAME] [--out benchmarks/results/commits_per_trial.json]``

A study of the synthetic space (``spotpatch.testing.synthetic_space``; ``--granularity`` block:
6 gates, site: 12) runs ``--trials`` trials in this process, as a local worker of ``spotpatch
run`` does (``run_trials``: ask, heartbeat, score, store the patch, tell), scored by the
stand-in evaluator in a few milliseconds, so that only the storage's work is left. The storage
is a new SQLite file, or ``--storage`` (an empty PostgreSQL database, for instance).
SQLAlchemy's events count every commit, every commit that wrote (a transaction with an INSERT,
UPDATE or DELETE: what takes SQLite's write lock and, on PostgreSQL, a flush of its log), every
statement and the writes per table; the counts before the first trial (creating the study) are
left out. Time per trial is the median over the trials (robust to other processes of a shared
machine), with the mean and this process's CPU time. Each trial's patch also goes to the
artifact folder as one file.

The record keeps one run per (label, storage, gates), with the spotpatch it imported (its folder
and git commit): ``PYTHONPATH=OLD_CHECKOUT`` measures earlier code with this script. Prints one
line.
"""

from __future__ import annotations

import argparse
import json
import re
import subprocess
import tempfile
import time
from collections import Counter
from pathlib import Path

import optuna
from sqlalchemy import event

import spotpatch
from spotpatch.search import StudyController, make_sampler, run_trials
from spotpatch.studies import artifact_store, open_storage
from spotpatch.testing import StandInEvaluator, synthetic_space

_WRITE = re.compile(r"\s*(INSERT\s+INTO|UPDATE|DELETE\s+FROM)\s+\"?(\w+)", re.IGNORECASE)


class _Counts:
    """Commits, writing commits, statements and writes per table of one engine."""

    def __init__(self, engine) -> None:
        self.commits = self.write_commits = self.statements = 0
        self.writes: Counter[str] = Counter()
        self._wrote = False
        event.listen(engine, "commit", self._commit)
        event.listen(engine, "rollback", self._rollback)
        event.listen(engine, "before_cursor_execute", self._statement)

    def _commit(self, conn) -> None:
        self.commits += 1
        self.write_commits += self._wrote
        self._wrote = False

    def _rollback(self, conn) -> None:
        self._wrote = False

    def _statement(self, conn, cursor, text, params, context, executemany) -> None:
        self.statements += 1
        write = _WRITE.match(text)
        if write:
            self._wrote = True
            self.writes[f"{write.group(1).split()[0].lower()} {write.group(2)}"] += 1

    def snapshot(self) -> dict:
        return {
            "commits": self.commits,
            "write_commits": self.write_commits,
            "statements": self.statements,
            "writes": dict(self.writes),
        }


def _code() -> dict:
    """The spotpatch measured: its folder and the git commit it is at (``+`` if changed)."""
    root = Path(spotpatch.__file__).resolve().parent.parent

    def git(*args: str) -> str:
        done = subprocess.run(["git", *args], cwd=root, capture_output=True, text=True)
        return done.stdout.strip()

    dirty = git("status", "--porcelain", "--", "spotpatch")
    return {
        "path": str(root),
        "commit": git("rev-parse", "--short", "HEAD") + ("+" if dirty else ""),
    }


def measure(trials: int, folder: Path, url: str | None = None, granularity: str = "block") -> dict:
    storage = open_storage(url or f"sqlite:///{folder / 'study.db'}")
    counts = _Counts(storage.engine)
    optuna.create_study(study_name="commits", storage=storage, directions=["maximize", "minimize"])
    space = synthetic_space(granularity=granularity)
    controller = StudyController(
        storage,
        "commits",
        space,
        sampler=make_sampler("random", 0),
        artifact_store=artifact_store(str(folder / "artifacts")),
    )
    setup = counts.snapshot()
    evaluator = StandInEvaluator(space, delay=(0.0, 0.0))
    start, cpu = time.perf_counter(), time.process_time()
    ends = [start]
    tell = controller.tell

    def timed_tell(trial, outcome) -> None:  # a trial ends when told (no reads added)
        tell(trial, outcome)
        ends.append(time.perf_counter())

    controller.tell = timed_tell
    state = run_trials(controller, evaluator, trials, seed=0)
    seconds, cpu = time.perf_counter() - start, time.process_time() - cpu
    each = sorted(b - a for a, b in zip(ends, ends[1:], strict=False))
    assert state.done == trials, state
    done = counts.snapshot()
    per_trial = {
        k: (done[k] - setup[k]) / trials for k in ("commits", "write_commits", "statements")
    }
    writes = Counter(done["writes"])
    writes.subtract(setup["writes"])
    return {
        "storage": storage.engine.dialect.name,
        "trials": trials,
        "gates": len(space.groups()),
        **{f"{k}_per_trial": v for k, v in per_trial.items()},
        "writes_per_trial": {k: v / trials for k, v in sorted(writes.items()) if v},
        "seconds_per_trial": seconds / trials,
        "median_seconds_per_trial": each[len(each) // 2],
        "cpu_seconds_per_trial": cpu / trials,
        "optuna": optuna.__version__,
        "code": _code(),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--trials", type=int, default=50)
    parser.add_argument("--storage", help="an empty database's URL (default: a new SQLite file)")
    parser.add_argument("--label", default="today", help="the run's name in the record")
    parser.add_argument(
        "--granularity", default="block", help="of the synthetic space: site (12 gates), block (6)"
    )
    parser.add_argument(
        "--out", type=Path, default=Path("benchmarks/results/commits_per_trial.json")
    )
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        measured = measure(args.trials, Path(tmp), args.storage, args.granularity)
        result = {"label": args.label, **measured}
    runs = json.loads(args.out.read_text()).get("runs", []) if args.out.is_file() else []

    def key(run: dict) -> tuple:
        return run.get("label"), run.get("storage"), run.get("gates")

    runs = [r for r in runs if key(r) != key(result)] + [result]
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({"runs": runs}, indent=2) + "\n")
    print(
        f"{args.label}, {result['storage']}, {result['gates']} gates, {result['trials']} trials: "
        f"{result['commits_per_trial']:.1f} commits ({result['write_commits_per_trial']:.1f} "
        f"writing), {result['statements_per_trial']:.0f} SQL statements, "
        f"{1e3 * result['median_seconds_per_trial']:.0f} ms per trial (median; mean "
        f"{1e3 * result['seconds_per_trial']:.0f} ms, "
        f"CPU {1e3 * result['cpu_seconds_per_trial']:.0f} ms)"
    )


if __name__ == "__main__":
    main()
