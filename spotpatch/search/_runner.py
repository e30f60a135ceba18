"""The one trial runner: a trial's job, run anywhere, and its outcome, told by the controller.

Every backend runs a trial the same way:

1. the driver asks the controller for a trial and turns it into a :class:`TrialJob` (plain,
   picklable: what a worker needs and nothing of the study);
2. any process runs the job on its evaluator with :func:`run_job`, which never raises for a
   failing or early-stopped trial but returns a :class:`TrialOutcome`;
3. the driver tells the outcome (:meth:`StudyController.tell`): metrics, artifact, FAIL with its
   error, or PRUNED.

:func:`run_trials` is the local loop over these steps; the Ray backend ships step 2 to its
workers and the outcome back.
"""

from __future__ import annotations

from collections.abc import Callable

from spotpatch.search._controller import StudyController
from spotpatch.search._early_stopping import early_stop_callback
from spotpatch.search._progress import StudyProgress
from spotpatch.search._trial import TrialJob, TrialOutcome
from spotpatch.spaces import PatchConfig

__all__ = ["run_job", "run_trials"]


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


def run_trials(
    controller: StudyController,
    evaluator,
    total: int,
    *,
    seed: int = 0,
    on_trial: Callable[[StudyProgress], None] | None = None,
) -> StudyProgress:
    """Run trials in this process until the study has ``total``.

    Ctrl-C fails the running trial, queues its config for the next run and re-raises.

    Example:
        >>> controller = StudyController(storage, "pets", space)  # doctest: +SKIP
        >>> run_trials(controller, evaluator, total=24, seed=0).done  # doctest: +SKIP
        24
    """
    while (trial := controller.ask(total)) is not None:
        try:
            outcome = run_job(controller.job(trial, seed), evaluator)
        except KeyboardInterrupt:
            controller.tell_interrupted(trial)
            raise
        controller.tell(trial, outcome)
        if on_trial is not None:
            on_trial(controller.progress(total))
    return controller.progress(total)
