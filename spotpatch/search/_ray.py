"""The Ray backend: trials as Ray Tune trials, asked and told against the same Optuna study.

A Tune :class:`Searcher` of ours asks the study controller for each trial and tells it each
outcome, so status, dashboard and export do not care which backend ran a trial, and nothing is
lost the way Ray's ``OptunaSearch`` can lose it (a result without the metric turned PRUNED, a
``tell`` error only logged). Workers run the same trial runner as local runs
(:func:`~spotpatch.search._runner.run_job`); its outcome (metrics and patch tensors, or the
error) travels back through a small actor on the driver's node, and the driver tells it, so
workers need no access to the storage or the artifact store. A trial whose worker dies has no
outcome: it is recorded FAIL with the reason and its config is the next trial, as for a local
worker that stops (up to :data:`~spotpatch.search.MAX_ATTEMPTS` runs of one config in a row).
Workers do need the study's data at the same paths (a shared file system).
"""

from __future__ import annotations

import collections
import logging
import os
import tempfile
import uuid
from collections.abc import Callable, Sequence
from dataclasses import asdict
from typing import Any

from spotpatch._errors import UserError
from spotpatch.search._progress import StudyProgress
from spotpatch.search._runner import StudyRun, run_job
from spotpatch.search._trial import TrialJob, TrialOutcome

__all__ = ["run_on_ray"]

log = logging.getLogger("spotpatch")
#: A worker's evaluators of the studies it ran trials of last, by run and study: Tune reuses
#: its actors, and a study's next trial there skips decoding its task again.
_EVALUATORS: collections.OrderedDict[tuple[str, int], Any] = collections.OrderedDict()
_KEEP = 4
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


def _run_trial(config: dict, make_evaluators, sink) -> None:
    """The Tune trainable: run one trial's job on this worker, send its outcome to the driver.

    Tune refuses a result without the searcher's metric (it would stop the whole run), so a
    failed or stopped trial reports a NaN mAP; what the study records travels in the outcome.
    """
    import ray
    from ray import tune

    index, job = config["study"], TrialJob(**config["job"])
    key = (config["run"], index)
    try:
        if key not in _EVALUATORS:
            _EVALUATORS[key] = make_evaluators[index]()
            while len(_EVALUATORS) > _KEEP:
                _EVALUATORS.popitem(last=False)
        _EVALUATORS.move_to_end(key)
        outcome = run_job(job, _EVALUATORS[key])
    except Exception as e:  # building the evaluator failed: the trial fails with it
        outcome = TrialOutcome(error=f"{type(e).__name__}: {e}")
    ray.get(sink.put.remote((index, job.number), outcome))
    tune.report({"map": outcome.map if outcome.map is not None else float("nan")})


def _make_searcher(driver: _DriverOnly, sink):
    import ray
    from ray.tune.search import Searcher

    class StudySearcher(Searcher):
        """Tune asks us for configs; we ask the study furthest from its total that has a trial
        left, and tell each study its trials' outcomes."""

        def __init__(self):
            super().__init__(metric="map", mode="max")

        @property
        def live(self) -> dict[str, Any]:
            return driver.live

        def suggest(self, trial_id: str):
            runs = driver.runs
            for index in sorted(
                range(len(runs)), key=lambda i: runs[i].controller.counted() / runs[i].total
            ):
                run = runs[index]
                trial = run.controller.ask(run.total)
                if trial is not None:
                    self.live[trial_id] = (index, trial)
                    job = asdict(run.controller.job(trial, run.seed))
                    return {"run": driver.key, "study": index, "job": job}
            # A live trial whose worker dies needs its config run again: not finished until
            # none is live (None: ask again later).
            return None if self.live else Searcher.FINISHED

        def on_trial_complete(self, trial_id: str, result=None, error: bool = False) -> None:
            if trial_id not in self.live:
                return
            index, trial = self.live.pop(trial_id)
            run = driver.runs[index]
            outcome = ray.get(sink.pop.remote((index, trial.number)))
            if outcome is None:  # its worker died before it sent one
                run.controller.tell_failed(trial, "its Ray worker died (see Ray's logs)")
            else:
                run.controller.tell(trial, outcome)
            if driver.on_progress is not None:
                driver.on_progress(run.name, run.progress())

        def interrupt_live(self) -> None:
            for index, trial in self.live.values():
                driver.runs[index].controller.tell_interrupted(trial)
            self.live.clear()

    return StudySearcher()


def run_on_ray(
    runs: Sequence[StudyRun],
    make_evaluators: Sequence[Callable[[], Any]],
    *,
    address: str | None = None,
    workers: int = 1,
    cpus_per_trial: float = 1.0,
    on_progress: Callable[[str, StudyProgress], None] | None = None,
) -> dict[str, StudyProgress]:
    """Run the remaining trials of every study as Ray Tune trials, on one cluster.

    Warm starts are not run here (run them first: :meth:`StudyController.claim_warm_start`).

    Args:
        runs: the studies (this process asks and tells for each).
        make_evaluators: per study, a picklable factory of its evaluator, called once per
            worker that runs one of its trials.
        address: ``auto`` or ``HOST:PORT`` joins a running cluster; None starts a local Ray.
        workers: trials at once.
        cpus_per_trial: CPUs Ray reserves per trial.
        on_progress: called with a study's name and progress after each of its trials.

    Returns:
        Each study's progress, by name.
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
    class OutcomeSink:
        """Holds trial outcomes from workers until the driver takes them."""

        def __init__(self):
            self.data: dict[tuple[int, int], TrialOutcome] = {}

        def put(self, key: tuple[int, int], outcome: TrialOutcome) -> None:
            self.data[key] = outcome

        def pop(self, key: tuple[int, int]) -> TrialOutcome | None:
            return self.data.pop(key, None)

    here = ray.get_runtime_context().get_node_id()
    strategy = ray.util.scheduling_strategies.NodeAffinitySchedulingStrategy(here, soft=False)
    sink = OutcomeSink.options(scheduling_strategy=strategy).remote()
    driver = _DriverOnly(runs=list(runs), on_progress=on_progress, live={})
    searcher = _make_searcher(driver, sink)
    trainable = tune.with_resources(
        tune.with_parameters(_run_trial, make_evaluators=list(make_evaluators), sink=sink),
        {"cpu": cpus_per_trial},
    )
    tuner = tune.Tuner(
        trainable,
        tune_config=tune.TuneConfig(
            search_alg=ConcurrencyLimiter(searcher, max_concurrent=workers),
            num_samples=-1,
            # A new actor per trial would start a process, import torch and decode the task.
            reuse_actors=True,
        ),
        run_config=tune.RunConfig(
            name=f"spotpatch-{uuid.uuid4().hex[:8]}",
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
    return {run.name: run.progress() for run in runs}
