"""What one trial costs the study's database: commits and SQL statements per trial.

Run: ``.venv/bin/python benchmarks/commits_per_trial.py [--trials 50] [--out
benchmarks/results/commits_per_trial.json]``

A study of the synthetic space (``spotpatch.testing.synthetic_space``, block gates) runs
``--trials`` trials in this process on a new SQLite storage, as a local worker of ``spotpatch
run`` does (``run_trials``: ask, heartbeat, score, store the patch, tell), scored by the
stand-in evaluator in a few milliseconds, so that only the storage's work is left. SQLAlchemy's
events count every commit and every statement the storage's engine runs; the counts before the
first trial (creating the study) are left out. Each trial's patch also goes to the artifact
folder as one file. Prints one line and writes the counts to ``--out``.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import optuna
from sqlalchemy import event

from spotpatch.search import StudyController, make_sampler, run_trials
from spotpatch.studies import artifact_store, open_storage
from spotpatch.testing import StandInEvaluator, synthetic_space


def measure(trials: int, folder: Path) -> dict:
    storage = open_storage(f"sqlite:///{folder / 'study.db'}")
    counts = {"commits": 0, "statements": 0}

    def commit(conn):
        counts["commits"] += 1

    def statement(conn, cursor, text, params, context, executemany):
        counts["statements"] += 1

    event.listen(storage.engine, "commit", commit)
    event.listen(storage.engine, "before_cursor_execute", statement)
    optuna.create_study(study_name="commits", storage=storage, directions=["maximize", "minimize"])
    space = synthetic_space(granularity="block")
    controller = StudyController(
        storage,
        "commits",
        space,
        sampler=make_sampler("random", 0),
        artifact_store=artifact_store(str(folder / "artifacts")),
    )
    setup = dict(counts)
    evaluator = StandInEvaluator(space, delay=(0.0, 0.0))
    start = time.perf_counter()
    state = run_trials(controller, evaluator, trials, seed=0)
    seconds = time.perf_counter() - start
    assert state.done == trials, state
    commits = counts["commits"] - setup["commits"]
    statements = counts["statements"] - setup["statements"]
    return {
        "trials": trials,
        "commits": commits,
        "statements": statements,
        "commits_per_trial": commits / trials,
        "statements_per_trial": statements / trials,
        "seconds_per_trial": seconds / trials,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--trials", type=int, default=50)
    parser.add_argument(
        "--out", type=Path, default=Path("benchmarks/results/commits_per_trial.json")
    )
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        result = measure(args.trials, Path(tmp))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(
        f"{result['trials']} trials: {result['commits_per_trial']:.1f} commits and "
        f"{result['statements_per_trial']:.0f} SQL statements per trial, "
        f"{1e3 * result['seconds_per_trial']:.0f} ms per trial on SQLite"
    )


if __name__ == "__main__":
    main()
