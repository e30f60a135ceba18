"""The one trial runner: a trial's job, run anywhere, and its outcome, told by the controller;
and the loop that works through one or many studies in one process.

Every backend runs a trial the same way:

1. the driver asks the controller for a trial and turns it into a :class:`TrialJob` (plain,
   picklable: what a worker needs and nothing of the study);
2. any process runs the job on its evaluator with :func:`run_job`, which never raises for a
   failing or early-stopped trial but returns a :class:`TrialOutcome`;
3. the driver tells the outcome (:meth:`StudyController.tell`): metrics, artifact, FAIL with its
   error, or PRUNED.

:func:`run_here` is the local loop over these steps, for any number of studies (each local
worker process runs it too); the Ray backend ships step 2 to its workers and the outcome back.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from spotpatch.search._controller import WAIT, WARM_START, StudyController
from spotpatch.search._early_stopping import early_stop_callback
from spotpatch.search._progress import StudyProgress
from spotpatch.search._trial import TrialJob, TrialOutcome
from spotpatch.spaces import PatchConfig

__all__ = ["StudyRun", "run_job", "run_here", "run_trials"]


def run_job(job: TrialJob, evaluator) -> TrialOutcome:
    """Score one trial's config on ``evaluator`` (in this process).

    A trial that raises is a failed outcome with its error; early stopping is a pruned one.
    Only ``KeyboardInterrupt`` (and other ``BaseException``) propagates.
    """
    import optuna

    seen: list[tuple[int, float]] = []
    callback = early_stop_callback(job.reference_maps(), job.margin, seen)
    try:
        result = evaluator.evaluate(
            PatchConfig.from_dict(job.sites),
            callback=callback,
            fractions=job.fractions,
            seed=job.seed,
        )
    except optuna.TrialPruned:
        return TrialOutcome(intermediate=tuple(seen))
    except Exception as e:  # a failing trial must not stop the study
        return TrialOutcome(error=f"{type(e).__name__}: {e}", intermediate=tuple(seen))
    return TrialOutcome(result=result)


@dataclass
class StudyRun:
    """One study's part in a run: its controller and total, how to score its configs and,
    optionally, its warm start.

    Attributes:
        controller: the study's controller.
        total: trials the study is to have.
        make_evaluator: builds the study's evaluator (called once, when first needed).
        seed: the study's seed, from which every trial's derives (:mod:`._seeds`).
        warm_start: given the evaluator, runs the warm start (a ``RelaxationResult``); None:
            the study has none.
    """

    controller: StudyController
    total: int
    make_evaluator: Callable[[], Any]
    seed: int = 0
    warm_start: Callable[[Any], Any] | None = None
    _evaluator: Any = field(default=None, init=False, repr=False)

    @property
    def name(self) -> str:
        return self.controller.study.study_name

    def evaluator(self):
        if self._evaluator is None:
            self._evaluator = self.make_evaluator()
        return self._evaluator

    def progress(self) -> StudyProgress:
        return self.controller.progress(self.total)

    def release(self) -> None:
        """Let the evaluator (and its decoded task) go: this process is done with the study."""
        self._evaluator = None

    def run_warm_start(self) -> None:
        """Run the warm start this process claimed and store it; a claim that fails or is
        interrupted is released for another process to take."""
        try:
            result = self.warm_start(self.evaluator())
        except BaseException:
            self.controller.abandon_warm_start()
            raise
        self.controller.finish_warm_start(result)


def _need(run: StudyRun) -> float:
    return run.controller.counted() / run.total


def run_here(
    runs: Sequence[StudyRun],
    *,
    on_progress: Callable[[str, StudyProgress], None] | None = None,
    poll: float = 2.0,
) -> dict[str, StudyProgress]:
    """Work through ``runs`` in this process until every study has its total.

    Each step takes the study furthest from its total (the first given, on a tie) that has
    work: its warm start, or its next trial. Other processes may work on the same studies at
    the same time (local workers, other drivers); while the only work left is another
    process's warm start, this one waits for it. Ctrl-C fails the running trial (its config is
    retried on resume), releases a warm start and re-raises.

    Returns:
        Every study's progress, by name.
    """
    active = list(runs)
    while active:
        waiting = False
        # One study needs no ordering (and ordering reads every study's trials).
        for run in sorted(active, key=_need) if len(active) > 1 else list(active):
            work = run.controller.next_work(run.total, warm_start=run.warm_start is not None)
            if work is None:
                active.remove(run)
                run.release()
                break
            if work == WAIT:
                waiting = True
                continue
            _step(run, work)
            if on_progress is not None:
                on_progress(run.name, run.progress())
            break
        else:
            if waiting:
                time.sleep(poll)
            else:
                break
    return {run.name: run.progress() for run in runs}


def _step(run: StudyRun, work) -> None:
    controller = run.controller
    if work == WARM_START:
        run.run_warm_start()
        return
    try:
        outcome = run_job(controller.job(work, run.seed), run.evaluator())
    except KeyboardInterrupt:
        controller.tell_interrupted(work)
        raise
    controller.tell(work, outcome)


def run_trials(
    controller: StudyController,
    evaluator,
    total: int,
    *,
    seed: int = 0,
    on_trial: Callable[[StudyProgress], None] | None = None,
) -> StudyProgress:
    """Run one study's trials in this process until it has ``total`` (no warm start).

    Example:
        >>> controller = StudyController(storage, "pets", space)  # doctest: +SKIP
        >>> run_trials(controller, evaluator, total=24, seed=0).done  # doctest: +SKIP
        24
    """
    run = StudyRun(controller, total, lambda: evaluator, seed=seed)
    report = None if on_trial is None else (lambda _, progress: on_trial(progress))
    return run_here([run], on_progress=report)[run.name]
