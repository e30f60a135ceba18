"""Writing the bundled benchmark: planning the splits, rendering them (in parallel when large),
their COCO files and one study file per task, all swapped into place at the end.

Imports from ``evaluators`` (the progress bar), ``studies`` (the study spec and its writer) and
the other ``benchmark`` modules.
"""

from __future__ import annotations

import json
import math
import multiprocessing
import os
import shutil
from collections.abc import Sequence
from pathlib import Path

from spotpatch._errors import UserError
from spotpatch._files import replace_folder
from spotpatch.benchmark._coco import Split, coco_json
from spotpatch.benchmark._render import render_job
from spotpatch.benchmark._tasks import BENCHMARK_TASKS, SOURCE_CLASSES, BenchmarkTask
from spotpatch.evaluators import progress_bar
from spotpatch.spaces import PRESETS
from spotpatch.studies import DataSpec, SearchSpec, SpaceSpec, StudySpec, write_spec

__all__ = ["study_spec", "write_benchmark"]

_SOURCE_SPLITS = {"train": 3000, "val": 300}
_TASK_SPLITS = {"train": 512, "val": 128, "test": 128}
_MIN_PARALLEL_IMAGES = 2000  # below this, spawning workers (~3 s each) costs more than it saves


def study_spec(task: BenchmarkTask, root: Path, *, seed: int = 0) -> StudySpec:
    """The study of a task of the benchmark written at ``root``: ``root/studies/NAME.toml``.

    Args:
        task: The benchmark task.
        root: The benchmark's folder.
        seed: The study's seed.

    Returns:
        The spec the benchmark writes for the task: its train, val and test splits, block gates
        and 24 trials, every preset (the existing techniques, which the report compares) among
        them, the ``descent`` sampler after the warm start; the rest is the spec's defaults
        (the shipped base, kinds bn, dw, lora4 and full, 300 steps per trial, lr 0.01 with norms
        and low-rank factors at 3x, the default storage).

    Example:
        >>> spec = study_spec(BENCHMARK_TASKS[0], Path("bench"))
        >>> spec.path.as_posix(), spec.data.val.as_posix()
        ('bench/studies/shapes-subset.toml', 'bench/tasks/shapes-subset/val.json')
    """
    folder = root / "tasks" / task.name
    return StudySpec(
        name=task.name,
        path=root / "studies" / f"{task.name}.toml",
        seed=seed,
        data=DataSpec(
            train=folder / "train.json",
            train_images=folder / "train",
            val=folder / "val.json",
            val_images=folder / "val",
            test=folder / "test.json",
            test_images=folder / "test",
        ),
        space=SpaceSpec(granularity="block"),
        search=SearchSpec(
            trials=30,
            presets=PRESETS,
            sampler="descent",
            repeats=2,
            confirm_seeds=3,
        ),
    )


def _plan(root: Path, scale: float, names: Sequence[str]) -> list[Split]:
    sets = [(root / "source", 0, SOURCE_CLASSES, _SOURCE_SPLITS, "source set")]
    sets += [
        (
            root / "tasks" / t.name,
            i + 1,
            t.classes,
            _TASK_SPLITS,
            f"task {t.name}: {t.description}",
        )
        for i, t in enumerate(BENCHMARK_TASKS)
        if t.name in names
    ]
    return [
        Split(folder / split, index, s, max(4, round(n * scale)), classes,
              f"spotpatch benchmark, {what}")
        for folder, index, classes, splits, what in sets
        for s, (split, n) in enumerate(splits.items())
    ]  # fmt: skip


def _generate(
    root: Path, seed: int, scale: float, names: Sequence[str], progress: bool | None,
    processes: int | None,
) -> None:  # fmt: skip
    splits = _plan(root, scale, names)
    jobs = []
    for sp in splits:
        sp.folder.mkdir(parents=True)
        jobs += [(seed, sp.task_index, sp.split_index, i, str(sp.folder / f"{i:06d}.png"))
                 for i in range(sp.count)]  # fmt: skip
    if processes is None:
        processes = 1 if len(jobs) < _MIN_PARALLEL_IMAGES else min(os.cpu_count() or 2, 4)
    results = []
    with progress_bar(desc="benchmark", total=len(jobs), unit="img", progress=progress) as bar:
        if processes <= 1:
            for job in jobs:
                results.append(render_job(job))
                bar.update()
        else:
            # Spawn, not fork: the caller may run threads (torch, ray) that a fork would break.
            with multiprocessing.get_context("spawn").Pool(processes) as pool:
                for res in pool.imap(render_job, jobs, chunksize=32):
                    results.append(res)
                    bar.update()
    start = 0
    for sp in splits:
        coco = coco_json(sp, seed, results[start : start + sp.count])
        start += sp.count
        sp.folder.with_suffix(".json").write_text(json.dumps(coco, separators=(",", ":")))
    (root / "studies").mkdir()
    for task in BENCHMARK_TASKS:
        if task.name in names:
            spec = study_spec(task, root, seed=seed)
            comment = f'Bundled benchmark task "{task.name}" ({task.transfer} transfer): '
            write_spec(spec, spec.path, comment=comment + task.description)


def write_benchmark(
    out: str | Path,
    *,
    seed: int = 0,
    scale: float = 1.0,
    tasks: Sequence[str] | None = None,
    progress: bool | None = None,
    overwrite: bool = False,
    processes: int | None = None,
) -> Path:
    """Write the benchmark under `out`; returns the resolved path.

    The benchmark is rendered into a sibling ``OUT.partial-<pid>`` folder and renamed into place
    once complete, so ``out`` never holds a half-written benchmark. Each task's study file,
    ``OUT/studies/NAME.toml``, is its :func:`study_spec`, written by
    :func:`spotpatch.studies.write_spec`.

    Args:
        out: Destination folder; must be absent or empty unless ``overwrite`` is set.
        seed: Benchmark seed; the same seed and scale give byte-identical files.
        scale: Multiplies every split's image count (rounded, at least 4 images).
        tasks: Names of the tasks to write (all when None); the source set is always written.
        progress: Show a progress bar; None shows it only on a terminal.
        overwrite: Replace a non-empty ``out``, once the new benchmark is complete.
        processes: Worker processes; None uses up to 4 (one for small benchmarks). Workers are
            spawned, so a script that calls this at import time needs the usual
            ``if __name__ == "__main__":`` guard.

    Returns:
        The resolved destination folder.

    Raises:
        UserError: On an unknown task name, a bad seed or scale, or a non-empty ``out`` without
            ``overwrite``.
    """
    known = [t.name for t in BENCHMARK_TASKS]
    names = known if tasks is None else list(tasks)
    unknown = [n for n in names if n not in known]
    if unknown:
        raise UserError(f"unknown benchmark task {unknown[0]!r}; known: {', '.join(known)}")
    if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
        raise UserError(f"benchmark seed must be a non-negative integer, got {seed!r}")
    if not (scale > 0 and math.isfinite(scale)):
        raise UserError(f"benchmark scale must be a positive number, got {scale!r}")
    out = Path(out).expanduser().resolve()
    if out.exists() and not overwrite and not (out.is_dir() and not any(out.iterdir())):
        hint = "pass overwrite=True (--force) to replace it"
        raise UserError(f"{out} exists and is not empty; {hint}")
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f"{out.name}.partial-{os.getpid()}")
    shutil.rmtree(
        tmp, ignore_errors=True
    )  # from an earlier run of a process with this pid, killed
    try:
        tmp.mkdir()
        _generate(tmp, seed, scale, names, progress, processes)
        replace_folder(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return out
