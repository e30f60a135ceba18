"""Running a study: open or resume it, warm-start it once, then trials on a backend."""

from __future__ import annotations

import functools
import logging
import multiprocessing
import os
import time
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

from spotpatch._errors import UserError
from spotpatch.evaluators import PatchEvaluator
from spotpatch.search import (
    EarlyStopping,
    StudyController,
    StudyMeta,
    StudyProgress,
    make_sampler,
    relax,
    relaxation_record,
    run_trials,
    write_relaxation,
)
from spotpatch.studies._setup import evaluator_of
from spotpatch.studies._spec import StudySpec, load_spec
from spotpatch.studies._storage import (
    artifact_store,
    artifacts_dir_for,
    create_or_load_study,
    open_storage,
)

__all__ = ["run_study", "open_controller"]

log = logging.getLogger("spotpatch")


def _meta(spec: StudySpec, evaluator: PatchEvaluator) -> StudyMeta:
    space, base = evaluator.space, evaluator.base
    return StudyMeta(
        task=spec.name,
        classes=evaluator.task.classes,
        category_ids=evaluator.task.category_ids,
        model=base.name,
        checkpoint=str(spec.base.checkpoint) if spec.base.checkpoint else None,
        base_sha256=base.sha256,
        granularity=space.granularity,
        kinds=space.kinds,
        dtype=space.dtype,
        full_bytes=space.full_bytes(),
        head_bytes=space.head_bytes(),
        artifacts=str(artifacts_dir_for(spec.search.storage, spec.search.artifacts)),
        spec=str(spec.path),
        seed=spec.seed,
        train={
            "steps": spec.train.steps,
            "batch_size": spec.train.batch_size,
            "lr": spec.train.lr,
            "hflip": spec.train.hflip,
        },
        sampler=spec.search.sampler,
        warm_start=spec.search.warm_start,
    )


def open_controller(spec: StudySpec, evaluator: PatchEvaluator) -> StudyController:
    """The study of a spec (created on first use), behind its controller."""
    storage = open_storage(spec.search.storage)
    meta = _meta(spec, evaluator)
    sampler = make_sampler(spec.search.sampler, spec.seed)
    create_or_load_study(meta, storage, sampler)
    early = (
        EarlyStopping(checkpoints=spec.search.checkpoints) if spec.search.early_stopping else None
    )
    return StudyController(
        storage,
        meta.task,
        evaluator.space,
        sampler=sampler,
        artifact_store=artifact_store(meta.artifacts),
        early_stopping=early,
    )


def _warm_start(spec: StudySpec, evaluator: PatchEvaluator, controller: StudyController) -> None:
    """Run the gate relaxation once per study and enqueue its configs as the first trials."""
    study = controller.study
    with controller.exclusive():
        if relaxation_record(study) is not None:
            return
        result = relax(
            evaluator.base,
            evaluator.task,
            evaluator.space,
            evaluator.settings,
            lambdas=spec.search.relaxation_lambdas,
            seed=spec.seed,
            progress=evaluator.progress,
        )
        write_relaxation(study, result)
        added = controller.enqueue(result.distinct_configs(), source="relaxation")
    log.info("warm start: %d configs from the gate relaxation (%.0f s)", added, result.seconds)


def _enqueue_presets(
    spec: StudySpec, evaluator: PatchEvaluator, controller: StudyController
) -> None:
    """Queue the fixed recipes the spec asks for, as reference points on the front; a recipe
    the study's gates cannot express (``lora4`` at block granularity) trains as it is."""
    configs = [evaluator.space.preset(name) for name in spec.search.presets]
    with controller.exclusive():
        controller.enqueue(configs, source="preset")


def _evaluator_for(spec_path: str, overrides: dict) -> PatchEvaluator:
    """A worker's evaluator for a spec (picklable by reference, for Ray and local workers)."""
    return evaluator_of(_override(load_spec(spec_path), **overrides), progress=False)


def _worker(spec_path: str, overrides: dict, total: int, threads: int) -> None:
    """One local worker process: its own evaluator, the shared study."""
    import torch

    torch.set_num_threads(threads)
    spec = _override(load_spec(spec_path), **overrides)
    evaluator = _evaluator_for(spec_path, overrides)
    try:
        run_trials(open_controller(spec, evaluator), evaluator, total, seed=spec.seed)
    except KeyboardInterrupt:
        pass


def _override(spec: StudySpec, **changes) -> StudySpec:
    changes = {k: v for k, v in changes.items() if v is not None}
    return replace(spec, search=replace(spec.search, **changes)) if changes else spec


def run_study(
    spec_path: str | Path,
    *,
    trials: int | None = None,
    backend: str | None = None,
    workers: int | None = None,
    storage: str | None = None,
    ray_address: str | None = None,
    progress: bool | None = None,
    on_trial: Callable[[StudyProgress], None] | None = None,
) -> StudyProgress:
    """Run (or resume) a study until it has ``trials`` trials in total.

    Completed trials are never run again; trials a stopped run left behind are retried.
    Arguments override the spec's ``[search]`` values.
    """
    overrides = {
        "trials": trials,
        "backend": backend,
        "workers": workers,
        "storage": storage,
        "ray_address": ray_address,
    }
    for key in ("trials", "workers"):
        if overrides[key] is not None and overrides[key] < 1:
            raise UserError(f"--{key} must be at least 1, got {overrides[key]}")
    if backend is not None and backend not in ("local", "ray"):
        raise UserError(f"--backend must be local or ray, got {backend!r}")
    spec = _override(load_spec(spec_path), **overrides)
    evaluator = evaluator_of(spec, progress=progress)
    controller = open_controller(spec, evaluator)
    total = spec.search.trials
    if spec.search.presets and controller.counted() < total:
        _enqueue_presets(spec, evaluator, controller)
    if spec.search.warm_start == "relaxation" and controller.counted() < total:
        _warm_start(spec, evaluator, controller)
    if spec.search.backend == "ray":
        from spotpatch.search import run_on_ray

        return run_on_ray(
            controller,
            functools.partial(_evaluator_for, str(spec.path), overrides),
            total=total,
            address=spec.search.ray_address,
            workers=spec.search.workers,
            seed=spec.seed,
            on_trial=on_trial,
        )
    if spec.search.workers == 1:
        return run_trials(controller, evaluator, total, seed=spec.seed, on_trial=on_trial)
    return _run_workers(spec, overrides, controller, total, on_trial)


def _run_workers(spec, overrides, controller, total, on_trial) -> StudyProgress:
    """``workers`` processes share the study's storage; this one reports progress."""
    k = spec.search.workers
    threads = max(1, (os.cpu_count() or 1) // k)
    context = multiprocessing.get_context("spawn")
    procs = [
        context.Process(target=_worker, args=(str(spec.path), overrides, total, threads))
        for _ in range(k)
    ]
    for p in procs:
        p.start()
    last = None
    try:
        while any(p.is_alive() for p in procs):
            time.sleep(2.0)
            state = controller.progress(total)
            if on_trial is not None and state != last:
                on_trial(state)
                last = state
    except KeyboardInterrupt:
        for p in procs:
            p.join(timeout=30)
        raise
    finally:
        for p in procs:
            if p.is_alive():
                p.terminate()
    failed = [p.exitcode for p in procs if p.exitcode not in (0, None)]
    if failed:
        log.warning("%d worker(s) exited with an error (exit codes %s)", len(failed), failed)
    return controller.progress(total)
