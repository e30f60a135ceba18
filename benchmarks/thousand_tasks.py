"""What a study stores, and what reading many studies costs: the numbers behind
docs/thousand_tasks.md.

Run: ``.venv/bin/python benchmarks/thousand_tasks.py --storage sqlite:///RUN.db --study NAME
[--copies 10 30 100] [--postgres URL] [--postgres-copies 20] [--runs 3] [--keep DIR]
[--out benchmarks/results/thousand_tasks.json]``

``--storage`` and ``--study`` name a study that ``spotpatch run`` wrote (its artifacts where its
metadata says). Measured:

- the study as stored: its trials by kind (counted toward the total, duplicates, confirmation
  runs, failed), the rows of every Optuna table that hold it, and per stored trial;
- its bytes per stored trial: in SQLite, the file of the most copies below less an empty
  storage's file, over the trials it holds; with ``--postgres`` (an empty database),
  ``--postgres-copies`` copies there (its tables and indexes after ``VACUUM``, less the empty
  schema's), and reading those as below; its artifact files' bytes;
- reading many studies: ``--copies`` N copies of the study (its trials and attributes, under the
  names ``task-i``) in one SQLite file, then for each N the medians over ``--runs`` (wall
  time, and this process's CPU time) of ``spotpatch status``'s work
  (:func:`spotpatch.studies.study_status`, after a first call that imports what it needs), and
  of one pass of what a driver of N studies does before each trial (``run_here`` orders the
  studies by how far each is from its total: every study's trials read, through Optuna's cache,
  which re-reads only unfinished trials).

``--keep DIR`` keeps the copies' SQLite files there (built once, reused). Prints a summary and
writes the numbers to ``--out``.
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
import timeit
from collections import Counter
from pathlib import Path

import optuna
import sqlalchemy

from spotpatch.search import study_meta, trial_records
from spotpatch.studies import open_storage, study_status

#: Optuna's tables that hold a study's trials, and how each row reaches its trial.
TRIAL_TABLES = (
    "trial_params",
    "trial_values",
    "trial_user_attributes",
    "trial_system_attributes",
    "trial_intermediate_values",
    "trial_heartbeats",
)
STUDY_TABLES = ("study_user_attributes", "study_system_attributes", "study_directions")


def _rows(engine, study_id: int) -> dict[str, int]:
    """Rows per table of one study."""
    out = {}
    with engine.connect() as conn:
        tables = set(sqlalchemy.inspect(conn).get_table_names())
        ids = "SELECT trial_id FROM trials WHERE study_id = :s"
        out["trials"] = conn.execute(
            sqlalchemy.text(f"SELECT count(*) FROM ({ids}) AS t"), {"s": study_id}
        ).scalar()
        for table in TRIAL_TABLES:
            if table in tables:
                sql = f"SELECT count(*) FROM {table} WHERE trial_id IN ({ids})"
                out[table] = conn.execute(sqlalchemy.text(sql), {"s": study_id}).scalar()
        for table in STUDY_TABLES:
            sql = f"SELECT count(*) FROM {table} WHERE study_id = :s"
            out[table] = conn.execute(sqlalchemy.text(sql), {"s": study_id}).scalar()
    return out


def _kinds(study) -> dict[str, int]:
    """The study's stored trials by what they are."""
    S = optuna.trial.TrialState
    kinds: Counter[str] = Counter()
    for r in trial_records(study):
        if r.duplicate_of is not None:
            kinds["duplicate (nothing trained)"] += 1
        elif r.confirm_stage is not None:
            kinds[f"confirmation run ({r.state.name.lower()})"] += 1
        elif r.state == S.COMPLETE:
            kinds[f"counted: {r.source}"] += 1
        else:
            kinds[r.state.name.lower() + (" (retried)" if r.retried else "")] += 1
    return dict(sorted(kinds.items()))


def _copy(source, storage, name: str) -> None:
    """``source`` (a loaded study) as study ``name`` of ``storage``: its trials and attributes."""
    optuna.copy_study(
        from_study_name=source.study_name,
        from_storage=source._storage,
        to_storage=storage,
        to_study_name=name,
    )


def _postgres(source, url: str, copies: int, runs: int) -> dict:
    """``copies`` copies of the study in an empty PostgreSQL database: the bytes of its tables
    and indexes less those of the empty schema (both ``VACUUM``-ed), and reading them."""
    storage = open_storage(url)
    sql = "SELECT sum(pg_total_relation_size(relid)) FROM pg_catalog.pg_statio_user_tables"

    def size() -> int:
        with storage.engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
            conn.execute(sqlalchemy.text("VACUUM"))
            return int(conn.execute(sqlalchemy.text(sql)).scalar())

    before = size()
    for i in range(copies):
        _copy(source, storage, f"task-{i}")
    out = {"copies": copies, "bytes": size() - before, "empty_schema": before}
    out.update(_reading(storage, copies, runs))
    storage.engine.dispose()
    return out


def _artifact_bytes(study) -> list[int]:
    """The bytes of every artifact file the study's trials name (a duplicate names its
    original's: counted once)."""
    folder = study_meta(study).artifacts
    records = trial_records(study)
    names = {r.artifact_id for r in records if r.artifact_id and r.duplicate_of is None}
    return [(Path(folder) / name).stat().st_size for name in sorted(names)] if folder else []


def _median_seconds(work, runs: int) -> dict:
    """The median wall time of ``runs`` calls, and their median CPU time in this process (less
    sensitive to other processes on a shared machine; a database server's work is not in it)."""
    wall = timeit.repeat(work, number=1, repeat=runs)
    cpu = timeit.repeat(work, number=1, repeat=runs, timer=time.process_time)
    return {"wall": statistics.median(wall), "cpu": statistics.median(cpu)}


def _copies(source, n: int, folder: Path) -> tuple[object, float | None]:
    """A SQLite storage of ``n`` copies of ``source`` (built unless ``folder`` has it; built
    beside, then renamed: a stopped build is not reused)."""
    path = folder / f"copies-{n}.db"
    if not path.is_file():
        partial = path.with_suffix(".partial")
        partial.unlink(missing_ok=True)
        storage = open_storage(f"sqlite:///{partial}")
        start = time.perf_counter()
        for i in range(n):
            _copy(source, storage, f"task-{i}")
        built = time.perf_counter() - start
        storage.engine.dispose()
        partial.rename(path)
    else:
        built = None
    return open_storage(f"sqlite:///{path}", existing=True), built


def _reading(storage, n: int, runs: int) -> dict:
    """``status`` over every study, and one pass of a driver's ordering of the studies."""
    study_status(storage)  # imports what it needs once, as a command does before reading
    status = _median_seconds(lambda: study_status(storage), runs)
    studies = [optuna.load_study(study_name=f"task-{i}", storage=storage) for i in range(n)]

    def order() -> None:
        sorted(studies, key=lambda s: sum(r.counts_toward_total() for r in trial_records(s)))

    order()  # the first pass fills each study's cache, as a driver's first step does
    return {"status_seconds": status, "order_pass_seconds": _median_seconds(order, runs)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--storage", required=True, help="the URL of a run's storage")
    parser.add_argument("--study", required=True)
    parser.add_argument("--copies", type=int, nargs="*", default=[10, 30, 100])
    parser.add_argument("--postgres", help="an empty PostgreSQL database's URL")
    parser.add_argument("--postgres-copies", type=int, default=20)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--keep", type=Path)
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/thousand_tasks.json"))
    args = parser.parse_args()
    source_storage = open_storage(args.storage, existing=True)
    source = optuna.load_study(study_name=args.study, storage=source_storage)
    study_id = source_storage.get_study_id_from_name(args.study)
    rows = _rows(source_storage.engine, study_id)
    stored = rows["trials"]
    artifacts = _artifact_bytes(source)
    with tempfile.TemporaryDirectory() as tmp:
        folder = args.keep or Path(tmp)
        folder.mkdir(parents=True, exist_ok=True)
        empty = open_storage(f"sqlite:///{Path(tmp) / 'empty.db'}")
        empty_bytes = (Path(tmp) / "empty.db").stat().st_size
        empty.engine.dispose()
        postgres = None
        if args.postgres:
            postgres = _postgres(source, args.postgres, args.postgres_copies, args.runs)
            print(f"PostgreSQL, {args.postgres_copies} studies: {postgres}", flush=True)
        reading = {}
        for n in args.copies:
            storage, built = _copies(source, n, folder)
            reading[n] = {
                "build_seconds": built,
                "file_bytes": (folder / f"copies-{n}.db").stat().st_size,
                **_reading(storage, n, args.runs),
            }
            storage.engine.dispose()
            print(f"{n} studies: {reading[n]}", flush=True)
    most = max(args.copies, default=0)
    result = {
        "study": args.study,
        "stored_trials": stored,
        "kinds": _kinds(source),
        "rows": rows,
        "rows_per_trial": {k: v / stored for k, v in rows.items() if k != "trials"},
        "gates": len(source.trials[0].distributions) if source.trials else 0,
        "sqlite_empty_schema_bytes": empty_bytes,
        "sqlite_bytes_per_trial": (
            (reading[most]["file_bytes"] - empty_bytes) / (most * stored) if most else None
        ),
        "postgres": postgres,
        "postgres_bytes_per_trial": (
            postgres["bytes"] / (postgres["copies"] * stored) if postgres else None
        ),
        "artifact_files": len(artifacts),
        "artifact_bytes": sum(artifacts),
        "artifact_bytes_per_file": sum(artifacts) / len(artifacts) if artifacts else None,
        "reading": reading,
        "optuna": optuna.__version__,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps({k: v for k, v in result.items() if k != "reading"}, indent=1))


if __name__ == "__main__":
    main()
