"""The Ray backend: trials as Ray Tune trials, asked and told against the same Optuna study.

A Tune :class:`Searcher` of ours asks the study controller for each trial and tells it each
outcome, so status, dashboard and export do not care which backend ran a trial, and nothing is
lost the way Ray's ``OptunaSearch`` can lose it (a result without the metric turned PRUNED, a
``tell`` error only logged). Workers run the same trial runner as local runs
(:func:`~spotpatch.search._runner.run_job`); its outcome (metrics and patch tensors, or the
error) travels back through a small actor on the driver's node, and the driver tells it, so
workers need no access to the storage or the artifact store. A trial whose worker dies has no
outcome and is recorded FAIL. Workers do need the study's data at the same paths (a shared file
system).
"""

from __future__ import annotations

import logging
import os
import tempfile
import uuid
from collections.abc import Callable
from dataclasses import asdict
from typing import Any

from spotpatch._errors import UserError
from spotpatch.search._controller import StudyController
from spotpatch.search._progress import StudyProgress
from spotpatch.search._runner import run_job
from spotpatch.search._trial import TrialJob, TrialOutcome

__all__ = ["run_on_ray"]

log = logging.getLogger("spotpatch")
_EVALUATORS: dict[Any, Any] = {}
_DRIVER_STATE: dict[str, Any] = {}


class _DriverOnly:
    """A reference to driver-side objects (the controller, its storage and threads).

    Tune pickles its search algorithm (to checkpoint the experiment); what this refers to
    stays in the driver's memory and is looked up again when unpickled there.
    """

    def __init__(self, **objects: Any):
        self.key = uuid.uuid4().hex
        _DRIVER_STATE[self.key] = objects

    def __getattr__(self, name: str) -> Any:
        if name == "key":
            raise AttributeError(name)
        return _DRIVER_STATE[self.key][name]

    def __getstate__(self) -> dict[str, str]:
        return {"key": self.key}

    def __setstate__(self, state: dict[str, str]) -> None:
        self.key = state["key"]

    def release(self) -> None:
        _DRIVER_STATE.pop(self.key, None)


def _run_trial(config: dict, make_evaluator, sink) -> None:
    """The Tune trainable: run one trial's job on this worker, send its outcome to the driver.

    Tune refuses a result without the searcher's metric (it would stop the whole run), so a
    failed or stopped trial reports a NaN mAP; what the study records travels in the outcome.
    """
    import ray
    from ray import tune

    if make_evaluator not in _EVALUATORS:  # a reused worker keeps its decoded task
        _EVALUATORS[make_evaluator] = make_evaluator()
    job = TrialJob(**config["job"])
    try:
        outcome = run_job(job, _EVALUATORS[make_evaluator])
    except Exception as e:  # building the evaluator failed: the trial fails with it
        outcome = TrialOutcome(error=f"{type(e).__name__}: {e}")
    ray.get(sink.put.remote(job.number, outcome))
    tune.report({"map": outcome.map if outcome.map is not None else float("nan")})


def _make_searcher(driver: _DriverOnly, total: int, seed: int, sink):
    import ray
    from ray.tune.search import Searcher

    class StudySearcher(Searcher):
        """Tune asks us for configs; we ask the study, and tell it each trial's outcome."""

        def __init__(self):
            super().__init__(metric="map", mode="max")

        @property
        def live(self) -> dict[str, Any]:
            return driver.live

        def suggest(self, trial_id: str):
            controller = driver.controller
            trial = controller.ask(total)
            if trial is None:
                return Searcher.FINISHED
            self.live[trial_id] = trial
            return {"job": asdict(controller.job(trial, seed))}

        def on_trial_complete(self, trial_id: str, result=None, error: bool = False) -> None:
            controller, on_trial = driver.controller, driver.on_trial
            trial = self.live.pop(trial_id, None)
            if trial is None:
                return
            outcome = ray.get(sink.pop.remote(trial.number))
            if outcome is None:
                outcome = TrialOutcome(error="the Ray trial crashed (see the Ray worker logs)")
            controller.tell(trial, outcome)
            if on_trial is not None:
                on_trial(controller.progress(total))

        def interrupt_live(self) -> None:
            for trial in self.live.values():
                driver.controller.tell_interrupted(trial)
            self.live.clear()

    return StudySearcher()


def run_on_ray(
    controller: StudyController,
    make_evaluator: Callable[[], Any],
    *,
    total: int,
    address: str | None = None,
    workers: int = 1,
    cpus_per_trial: float = 1.0,
    seed: int = 0,
    on_trial: Callable[[StudyProgress], None] | None = None,
) -> StudyProgress:
    """Run the study's remaining trials as Ray Tune trials.

    Args:
        controller: the study's controller (this process asks and tells).
        make_evaluator: a picklable factory of the task's evaluator, called once per worker.
        total: trials in total.
        address: ``auto`` or ``HOST:PORT`` joins a running cluster; None starts a local Ray.
        workers: trials at once.
        cpus_per_trial: CPUs Ray reserves per trial.
    """
    try:
        import ray
        from ray import tune
        from ray.tune.search import ConcurrencyLimiter
    except ImportError:  # pragma: no cover - ray[tune] is a dependency
        raise UserError("the ray backend needs ray[tune]: pip install 'ray[tune]'") from None

    started = not ray.is_initialized()
    if started:
        try:
            if address:
                ray.init(address=address, logging_level=logging.WARNING, log_to_driver=False)
            else:
                ray.init(
                    num_cpus=max(int(workers * cpus_per_trial), os.cpu_count() or 1),
                    include_dashboard=False,
                    logging_level=logging.WARNING,
                    log_to_driver=False,
                )
        except ConnectionError as e:
            raise UserError(f"cannot join the Ray cluster at {address}: {e}") from None

    @ray.remote(num_cpus=0)
    class PatchSink:
        """Holds trial outcomes from workers until the driver takes them."""

        def __init__(self):
            self.data: dict[int, TrialOutcome] = {}

        def put(self, number: int, outcome: TrialOutcome) -> None:
            self.data[number] = outcome

        def pop(self, number: int) -> TrialOutcome | None:
            return self.data.pop(number, None)

    here = ray.get_runtime_context().get_node_id()
    strategy = ray.util.scheduling_strategies.NodeAffinitySchedulingStrategy(here, soft=False)
    sink = PatchSink.options(scheduling_strategy=strategy).remote()
    driver = _DriverOnly(controller=controller, on_trial=on_trial, live={})
    searcher = _make_searcher(driver, total, seed, sink)
    trainable = tune.with_resources(
        tune.with_parameters(_run_trial, make_evaluator=make_evaluator, sink=sink),
        {"cpu": cpus_per_trial},
    )
    tuner = tune.Tuner(
        trainable,
        tune_config=tune.TuneConfig(
            search_alg=ConcurrencyLimiter(searcher, max_concurrent=workers),
            num_samples=-1,
        ),
        run_config=tune.RunConfig(
            name=f"spotpatch-{controller.study.study_name}-{uuid.uuid4().hex[:8]}",
            storage_path=os.path.join(tempfile.gettempdir(), "spotpatch-ray"),
            verbose=0,
            failure_config=tune.FailureConfig(max_failures=0),
        ),
    )
    try:
        tuner.fit()
    finally:
        searcher.interrupt_live()
        driver.release()
        if started:
            ray.shutdown()
    return controller.progress(total)
