"""Running studies: open or resume each, then their warm starts and trials on a backend.

One command may run many studies (one per task): each keeps its own spec, storage and resume,
and they share the workers (local processes, or one Ray cluster).
"""

from __future__ import annotations

import dataclasses
import functools
import logging
import multiprocessing
import os
import signal
import threading
import time
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

from spotpatch._errors import UserError
from spotpatch.evaluators import Base, PatchEvaluator
from spotpatch.search import (
    EarlyStopping,
    StudyController,
    StudyMeta,
    StudyProgress,
    StudyRun,
    make_sampler,
    relax,
    run_here,
    sampler_seed,
    study_meta,
    warm_start_seed,
)
from spotpatch.studies._select import answer_or_why
from spotpatch.studies._setup import base_of, confirm_images, evaluator_of, study_space
from spotpatch.studies._spec import BACKENDS, StudySpec, load_spec
from spotpatch.studies._spec_writer import spec_toml
from spotpatch.studies._storage import (
    artifact_store,
    artifacts_dir_for,
    check_run_folders,
    create_or_load_study,
    load_study,
    open_storage,
)

log = logging.getLogger("spotpatch")

__all__ = ["run_answers", "run_studies", "run_study", "open_controller"]


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
        train=dataclasses.asdict(spec.train),
        sampler=spec.search.sampler,
        warm_start=spec.search.warm_start,
        tolerance=spec.search.tolerance,
        spec_text=spec_toml(spec),
    )


class _Opened:
    """What the studies of a run open once per process and share: storages (by URL) and base
    detectors (by model, checkpoint and device). Opening a storage takes a tenth of a second
    and loading a base half a second: once per study of a fleet, it would add up."""

    def __init__(self):
        self.storages: dict[str, Any] = {}
        self.bases: dict[tuple, Base] = {}

    def storage(self, url: str):
        if url not in self.storages:
            self.storages[url] = open_storage(url)
        return self.storages[url]

    def base(self, spec: StudySpec) -> Base:
        key = _base_key(spec)
        if key not in self.bases:
            self.bases[key] = base_of(spec)
        return self.bases[key]

    def evaluator(self, spec: StudySpec, progress: bool | None = False) -> PatchEvaluator:
        """A spec's evaluator, on the base already loaded if any (else its data is read
        first: its problems are the user's most likely ones)."""
        key = _base_key(spec)
        evaluator = evaluator_of(spec, base=self.bases.get(key), progress=progress)
        self.bases.setdefault(key, evaluator.base)
        return evaluator


def _base_key(spec: StudySpec) -> tuple:
    return spec.base.model, spec.base.checkpoint, spec.base.device


def open_controller(
    spec: StudySpec, evaluator: PatchEvaluator | None = None, *, opened: _Opened | None = None
) -> StudyController:
    """The study of a spec behind its controller: created on first use from the evaluator's
    task and space; without an evaluator the study must exist, and its space is rebuilt from
    what it recorded (a worker that reads its task only when it first trains). ``opened``:
    the storages and bases this process already opened.

    Each process that asks the study for trials (a worker, another driver, on any host) seeds
    its sampler with the spec's seed plus its index among them: processes sharing a study would
    otherwise propose the same configs in lockstep."""
    opened = opened or _Opened()
    storage = opened.storage(spec.search.storage)
    if evaluator is not None:
        meta = _meta(spec, evaluator)
        space = evaluator.space
    else:
        meta = study_meta(load_study(spec.name, storage))
        space = study_space(opened.base(spec), meta)
    tolerance = spec.search.tolerance
    sampler = functools.partial(_sampler, spec.search.sampler, spec.seed, space, tolerance)
    if evaluator is not None:
        create_or_load_study(meta, storage, sampler(0))
    early = (
        EarlyStopping(checkpoints=spec.search.checkpoints) if spec.search.early_stopping else None
    )
    return StudyController(
        storage,
        meta.task,
        space,
        sampler_for=sampler,
        artifact_store=artifact_store(meta.artifacts),
        early_stopping=early,
        repeats=spec.search.repeats,
        tolerance=tolerance,
        confirm_seeds=spec.search.confirm_seeds,
        confirm_images=confirm_images(spec),
        confirm_margin=spec.search.confirm_margin,
        stale_after=spec.search.stale_after,
    )


def _sampler(name: str, seed: int, space, tolerance: float, index: int):
    return make_sampler(
        name,
        sampler_seed(seed, index),
        groups=space.stage_gates(),
        cost=space.gates_bytes,
        tolerance=tolerance,
    )


def _enqueue_presets(
    spec: StudySpec, evaluator: PatchEvaluator, controller: StudyController
) -> None:
    """Queue the fixed recipes the spec asks for, as reference points on the front; a recipe
    the study's gates cannot express (``lora4`` at block granularity) trains as it is."""
    configs = [evaluator.space.preset(name) for name in spec.search.presets]
    with controller.exclusive():
        controller.enqueue(configs, source="preset")


def _relax(spec: StudySpec, evaluator: PatchEvaluator):
    """The study's warm start: the gate relaxation, once per study."""
    result = relax(
        evaluator.base,
        evaluator.task,
        evaluator.space,
        evaluator.settings,
        lambdas=spec.search.relaxation_lambdas,
        seed=warm_start_seed(spec.seed),
        progress=evaluator.progress,
    )
    log.info("warm start of %s: %.0f s", spec.name, result.seconds)
    return result


def _override(spec: StudySpec, **changes) -> StudySpec:
    changes = {k: v for k, v in changes.items() if v is not None}
    return replace(spec, search=replace(spec.search, **changes)) if changes else spec


def _specs(spec_paths, overrides: dict) -> list[StudySpec]:
    specs = [_override(load_spec(p), **overrides) for p in spec_paths]
    if not specs:
        raise UserError("give at least one study file")
    seen: dict[tuple[str, str], Path] = {}
    for spec in specs:
        key = (spec.name, spec.search.storage)
        if key in seen:
            raise UserError(
                f"{spec.path} and {seen[key]} are both study {spec.name!r} in "
                f"{spec.search.storage}: give each study file once"
            )
        seen[key] = spec.path
    for key in ("backend", "workers", "ray_address"):
        values = {getattr(s.search, key) for s in specs}
        if len(values) > 1:
            raise UserError(
                f"the study files disagree on search.{key} ({', '.join(map(str, values))}): "
                f"give --{key.replace('_', '-')} for the whole run"
            )
    return specs


def _maker(spec: StudySpec, evaluator_for=None) -> Callable[[], PatchEvaluator]:
    """A picklable factory of a spec's evaluator (one per process that scores its trials)."""
    if evaluator_for is not None:
        return functools.partial(evaluator_for, spec)
    return functools.partial(evaluator_of, spec, progress=False)


def _study_run(
    spec: StudySpec,
    controller: StudyController,
    evaluator=None,
    evaluator_for=None,
    opened: _Opened | None = None,
) -> StudyRun:
    """A spec's part in a run; its evaluator is the one given, else built when first needed
    (on the base this process ``opened``, if any)."""
    if evaluator is not None:
        make = functools.partial(_same, evaluator)
    elif opened is not None and evaluator_for is None:
        make = functools.partial(opened.evaluator, spec)
    else:
        make = _maker(spec, evaluator_for)
    warm = spec.search.warm_start == "relaxation"
    return StudyRun(
        controller,
        spec.search.trials,
        make,
        seed=spec.seed,
        warm_start=functools.partial(_relax, spec) if warm else None,
    )


def _same(value):
    return value


def _setup(
    spec: StudySpec, progress: bool | None, evaluator_for, opened: _Opened
) -> tuple[StudyController, PatchEvaluator]:
    """Open (or create) a spec's study and queue its presets."""
    if evaluator_for is not None:
        evaluator = evaluator_for(spec)
    else:
        evaluator = opened.evaluator(spec, progress)
    controller = open_controller(spec, evaluator, opened=opened)
    if spec.search.presets and controller.counted() < spec.search.trials:
        _enqueue_presets(spec, evaluator, controller)
    return controller, evaluator


def run_studies(
    spec_paths,
    *,
    trials: int | None = None,
    backend: str | None = None,
    workers: int | None = None,
    storage: str | None = None,
    ray_address: str | None = None,
    progress: bool | None = None,
    on_progress: Callable[[str, StudyProgress], None] | None = None,
    evaluator_for: Callable[[StudySpec], PatchEvaluator] | None = None,
) -> dict[str, StudyProgress]:
    """Run (or resume) studies until each has its trials in total.

    Every study's storage and artifact folder are checked first (:func:`check_run_folders`):
    a folder a run could not write to is refused before anything is written. Completed trials
    are never run again; trials and warm starts a stopped run left behind are retried.
    Arguments override every spec's ``[search]`` values. The workers stay busy while
    any study has work left (its warm start, its presets, its trials): with the local backend,
    each of ``workers`` processes takes the next piece of work of the study furthest from its
    total; with Ray, the warm starts run here and the trials of every study share the cluster.

    Args:
        on_progress: called with a study's name and progress: once per study before any
            work (where a resumed study stands), then as its trials finish (with local
            workers, every two seconds for the studies that changed).
        evaluator_for: builds a spec's evaluator instead of :func:`evaluator_of` (a picklable
            function: local workers and Ray workers build theirs with it), such as a stand-in
            that scores in milliseconds (:mod:`spotpatch.testing`).

    Returns:
        Each study's progress, by name, in the order given.
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
    if backend is not None and backend not in BACKENDS:
        raise UserError(f"--backend must be one of {', '.join(BACKENDS)}, got {backend!r}")
    specs = _specs(spec_paths, overrides)
    for spec in specs:  # every study's, before any study is opened or its data read
        check_run_folders(
            spec.search.storage, artifacts_dir_for(spec.search.storage, spec.search.artifacts)
        )
    opened = _Opened()
    first = specs[0].search
    runs = []
    for spec in specs:
        controller, evaluator = _setup(spec, progress, evaluator_for, opened)
        # This process keeps a study's evaluator (its decoded task) only where it trains it:
        # in-process, or its warm start before Ray's trials; local workers read their own.
        warm = first.backend == "ray" and spec.search.warm_start == "relaxation"
        keep = (first.backend != "ray" and first.workers == 1) or warm
        runs.append(_study_run(spec, controller, evaluator if keep else None, evaluator_for))
    start = {run.name: run.progress() for run in runs} if on_progress is not None else {}
    for name, state in start.items():
        on_progress(name, state)
    if first.backend == "ray":
        makers = [_maker(s, evaluator_for) for s in specs]
        return _run_ray(specs, runs, makers, on_progress)
    if first.workers == 1:
        return run_here(runs, on_progress=on_progress)
    return _run_workers(specs, runs, on_progress, start, evaluator_for)


def run_study(
    spec_path: str | Path,
    *,
    on_trial: Callable[[StudyProgress], None] | None = None,
    **options,
) -> StudyProgress:
    """Run (or resume) one study until it has its trials in total (see :func:`run_studies`)."""
    report = None if on_trial is None else (lambda _, state: on_trial(state))
    return next(iter(run_studies([spec_path], on_progress=report, **options).values()))


def run_answers(spec_paths, *, storage: str | None = None) -> dict:
    """Each run study's answer after a run, by name: (answer or None, the full detector's
    bytes, why there is none or what its confirmation said)."""
    out = {}
    for spec in _specs(spec_paths, {"storage": storage}):
        study = load_study(spec.name, open_storage(spec.search.storage, existing=True))
        answer = answer_or_why(study)
        full = study_meta(study).full_bytes
        if isinstance(answer, str):
            out[spec.name] = (None, full, answer)
        else:
            c = answer.confirmation
            out[spec.name] = (answer, full, c.note if c is not None and c.note else "")
    return out


def _run_ray(specs, runs, makers, on_progress) -> dict[str, StudyProgress]:
    """Warm starts here, one study after another; then every study's trials on one cluster."""
    from spotpatch.search import run_on_ray

    for run in runs:
        if run.warm_start is not None and run.controller.claim_warm_start(run.total):
            run.run_warm_start()
        run.release()
    first = specs[0].search
    return run_on_ray(
        runs,
        makers,
        address=first.ray_address,
        workers=first.workers,
        on_progress=on_progress,
    )


def stop_with_parent(every: float = 2.0) -> None:
    """Interrupt this process, as Ctrl-C would (its trial fails and is retried), once the
    process that started it is gone: a driver killed outright leaves no worker training on."""
    parent = os.getppid()

    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(every)
        os.kill(os.getpid(), signal.SIGINT)

    threading.Thread(target=watch, name="stop-with-parent", daemon=True).start()


def _worker(specs: list[StudySpec], threads: int, evaluator_for=None) -> None:
    """One local worker process: its own evaluators, the shared studies."""
    import torch

    stop_with_parent()
    torch.set_num_threads(threads)
    opened = _Opened()
    runs = [
        _study_run(s, open_controller(s, opened=opened), None, evaluator_for, opened)
        for s in specs
    ]
    try:
        run_here(runs)
    except KeyboardInterrupt:
        pass


def _run_workers(specs, runs, on_progress, start, evaluator_for) -> dict[str, StudyProgress]:
    """``workers`` processes share the studies' storages; this one reports the studies whose
    progress changed since ``start`` (each study's, by name)."""
    k = specs[0].search.workers
    threads = max(1, (os.cpu_count() or 1) // k)
    context = multiprocessing.get_context("spawn")
    procs = [
        context.Process(target=_worker, args=(specs, threads, evaluator_for)) for _ in range(k)
    ]
    for p in procs:
        p.start()
    last = dict(start)
    try:
        while any(p.is_alive() for p in procs):
            time.sleep(2.0)
            for run in runs:
                state = run.progress()
                if on_progress is not None and last.get(run.name) != state:
                    on_progress(run.name, state)
                    last[run.name] = state
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
    return {run.name: run.progress() for run in runs}
