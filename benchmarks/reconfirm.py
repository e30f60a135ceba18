"""Confirm the studies of a finished ``reproduce.py`` output again, with today's confirmation.

Run: ``.venv/bin/python benchmarks/reconfirm.py --runs runs/seed2 --out runs/seed2t --seed 2
[--workers 2]``

Copies ``--runs`` to ``--out`` (the copy only: ``--runs`` is left as it is), then in the copy:

1. scores every search trial's stored patch on its task's test split and records it as the
   trial's ``test_map``, as a trial of today's search records it (nothing trains; a trial
   that has one keeps it);
2. drops each study's confirmation plan, so that its confirmation starts again under today's
   rule (on val and test together, where the task has a test split); the runs stored under the
   old plan stay in the study, and those the new plan can use (scored on its images) count;
3. runs ``reproduce.py`` on the copy with the same seed and workers: every search trial is
   there, so only the confirmation runs it needs train.

The search is the one ``--runs`` made, so the answers it starts from are the same; what
changes is how they are confirmed.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sqlite3
from pathlib import Path

import torch
from reproduce import main_ as reproduce

from spotpatch.search import spotpatch_study_names, trial_records
from spotpatch.studies import evaluator_of, load_spec, load_study, open_storage, trial_patch

_PLAN = "confirmation"  # the study's user attribute holding its confirmation plan


def rescore(out: Path) -> int:
    """Record the test mAP of every search trial of ``out``'s studies that stored a patch;
    returns how many were scored."""
    torch.set_num_threads(2)
    storage = open_storage(f"sqlite:///{out / 'spotpatch.db'}", existing=True)
    scored = 0
    for name in spotpatch_study_names(storage):
        study = load_study(name, storage)
        evaluator = evaluator_of(load_spec(out / "studies" / f"{name}.toml"), progress=False)
        for record in trial_records(study):
            if not record.complete or record.test_map is not None or not record.artifact_id:
                continue
            patch = trial_patch(study, record, storage)
            test, _ = evaluator.score(patch, "test")
            trial_id = storage.get_trial_id_from_study_id_trial_number(
                storage.get_study_id_from_name(name), record.number
            )
            # Optuna refuses to change a finished trial: the attribute goes in as Optuna's
            # SQLite schema stores one (a JSON value per trial and key).
            with sqlite3.connect(out / "spotpatch.db") as db:
                db.execute(
                    "INSERT OR REPLACE INTO trial_user_attributes (trial_id, key, value_json) "
                    "VALUES (?, ?, ?)",
                    (trial_id, "test_map", json.dumps(test)),
                )
            scored += 1
        study.set_user_attr(_PLAN, None)
        print(json.dumps({"study": name, "scored": scored}), flush=True)
    return scored


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=Path, required=True, help="a reproduce.py output")
    parser.add_argument("--out", type=Path, required=True, help="where the copy goes")
    parser.add_argument("--seed", type=int, default=0, help="its benchmark seed (default 0)")
    parser.add_argument("--workers", type=int, default=2)
    args = parser.parse_args(argv)
    if not args.out.exists():
        shutil.copytree(args.runs, args.out)
    rescore(args.out)  # again after a stop: what it scored is kept
    options = ["--out", str(args.out), "--workers", str(args.workers), "--seed", str(args.seed)]
    return reproduce(options)


if __name__ == "__main__":
    raise SystemExit(main())
