"""The controller's contract, with a fast stand-in evaluator (no training): real Optuna
storages, samplers and artifacts."""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
import time

import optuna
import pytest
import torch

from spotpatch.evaluators import EvalResult
from spotpatch.search import (
    SAMPLER_NAMES,
    EarlyStopping,
    StudyController,
    make_sampler,
    run_trials,
    trial_record,
)
from spotpatch.studies import artifact_store, open_storage

S = optuna.trial.TrialState


class FakeEvaluator:
    """Scores a config by a fixed function of its bytes; records every call."""

    def __init__(self, space, fail_on=None, interrupt_on=None):
        self.space = space
        self.calls: list[dict] = []
        self.fail_on, self.interrupt_on = fail_on, interrupt_on

    def evaluate(self, config, *, callback=None, fractions=(), seed=0):
        self.calls.append(config.to_dict())
        if self.fail_on is not None and len(self.calls) == self.fail_on:
            raise RuntimeError("boom")
        if self.interrupt_on is not None and len(self.calls) == self.interrupt_on:
            raise KeyboardInterrupt
        size = self.space.patch_bytes(config)
        # Larger is better, except that configs with an odd number of sites are poor: so some
        # configs are dominated by smaller ones.
        value = (size / self.space.full_bytes()) ** 0.5 * (0.15 if len(config.kinds) % 2 else 0.5)
        seen = tuple((i + 1, value * f) for i, f in enumerate(fractions))
        for (step, v), f in zip(seen, fractions, strict=True):
            if callback is not None:
                callback(step, f, v)
        return EvalResult(value, value, size, 0.1, 0.1, config, {"x": torch.zeros(3)}, seen)


@pytest.fixture
def setup(tmp_path, random_base):
    def make(sampler="nsga2", early=None, name="t", **fake):
        storage = open_storage(f"sqlite:///{tmp_path}/s.db")
        optuna.create_study(
            study_name=name,
            storage=storage,
            directions=["maximize", "minimize"],
            load_if_exists=True,
        )
        space = random_base.space(3, granularity="stage")
        controller = StudyController(
            storage,
            name,
            space,
            sampler=make_sampler(sampler, 0),
            artifact_store=artifact_store(tmp_path / "art"),
            early_stopping=early,
        )
        return controller, FakeEvaluator(space, **fake)

    return make


@pytest.mark.parametrize("sampler", SAMPLER_NAMES)
def test_every_sampler_runs_a_study(setup, sampler):
    controller, evaluator = setup(sampler)
    state = run_trials(controller, evaluator, 10)
    assert state.done == 10 and state.failed == 0 and len(evaluator.calls) == 10
    assert state.front_size >= 1 and 0 < state.hypervolume <= 0.5
    trial = controller.study.best_trials[0]
    for key in ("map", "map50", "patch_bytes", "config", "summary", "artifact_id"):
        assert key in trial.user_attrs
    assert trial.values[1] == trial.user_attrs["patch_bytes"]


def test_resume_never_reruns_trials(setup, tmp_path):
    controller, evaluator = setup()
    run_trials(controller, evaluator, 4)
    again, evaluator2 = setup()
    state = run_trials(again, evaluator2, 6)
    assert len(evaluator2.calls) == 2 and state.done == 6
    assert run_trials(again, evaluator2, 6).done == 6 and len(evaluator2.calls) == 2


def test_artifact_holds_the_patch(setup, tmp_path):
    from safetensors.torch import load_file

    controller, evaluator = setup()
    run_trials(controller, evaluator, 1)
    trial = controller.study.trials[0]
    out = tmp_path / "p.safetensors"
    optuna.artifacts.download_artifact(
        artifact_store=controller.artifact_store,
        file_path=str(out),
        artifact_id=trial.user_attrs["artifact_id"],
    )
    assert torch.equal(load_file(out)["x"], torch.zeros(3))
    # The trial records the stored file's sha256, which readers check.
    assert trial.user_attrs["artifact_sha256"] == hashlib.sha256(out.read_bytes()).hexdigest()
    assert trial_record(trial).artifact_sha256 == trial.user_attrs["artifact_sha256"]


def test_a_trial_that_raises_is_recorded_and_its_config_asked_again(setup):
    controller, evaluator = setup(fail_on=2)
    state = run_trials(controller, evaluator, 4)
    assert state.done == 4 and state.failed == 0  # the retried failure does not count
    (failed,) = [r for r in controller.records() if r.state == S.FAIL]
    assert failed.error == "RuntimeError: boom" and failed.retried
    (retry,) = [r for r in controller.records() if r.retry_of == failed.number]
    assert retry.complete and retry.params == failed.params
    assert evaluator.calls[2] == evaluator.calls[1]
    assert len(evaluator.calls) == 5


def test_a_config_that_raises_every_time_is_failed_for_good_after_its_attempts(setup):
    from spotpatch.search import MAX_ATTEMPTS

    controller, _ = setup()

    class Broken(FakeEvaluator):
        def evaluate(self, config, **kwargs):
            self.calls.append(config.to_dict())
            raise RuntimeError("boom")

    broken = Broken(controller.space)
    state = run_trials(controller, broken, 2)
    assert (state.done, state.failed) == (2, 2)
    assert len(broken.calls) == 2 * MAX_ATTEMPTS
    given_up = [r for r in controller.records() if r.counts_toward_total()]
    assert [r.error for r in given_up] == [
        f"RuntimeError: boom; {MAX_ATTEMPTS} runs of this config in a row failed: not retried"
    ] * 2


def test_enqueued_configs_come_first_and_are_not_duplicated(setup):
    controller, evaluator = setup()
    configs = [controller.space.preset("bn"), controller.space.preset("head")]
    assert controller.enqueue(configs + configs[:1], source="relaxation") == 2
    run_trials(controller, evaluator, 3)
    assert evaluator.calls[:2] == [c.to_dict() for c in configs]
    assert controller.study.trials[0].user_attrs["source"] == "relaxation"


def test_ctrl_c_fails_the_trial_and_retries_it_on_resume(setup):
    controller, evaluator = setup(interrupt_on=2)
    with pytest.raises(KeyboardInterrupt):
        run_trials(controller, evaluator, 3)
    interrupted = controller.study.trials[1]
    assert interrupted.state == S.FAIL and "interrupted" in interrupted.user_attrs["error"]
    again, evaluator2 = setup()
    state = run_trials(again, evaluator2, 3)
    assert state.done == 3 and state.failed == 0  # the retried failure does not count
    assert evaluator2.calls[0] == interrupted.user_attrs["config"]


def test_a_trial_left_running_by_a_killed_worker_is_retried(setup, tmp_path):
    controller, evaluator = setup()
    run_trials(controller, evaluator, 1)
    # Another process asks a trial and is killed while it runs.
    code = f"""
import os, optuna, sys
sys.path.insert(0, {str(os.getcwd())!r})
from spotpatch.evaluators import load_base
from spotpatch.search import StudyController
from spotpatch.studies import open_storage
storage = open_storage("sqlite:///{tmp_path}/s.db")
base = load_base("spotpatch-tiny", random_init=True, device="cpu")
trial = StudyController(storage, "t", base.space(3, granularity="stage")).ask(5)
print(trial.number, flush=True)
os._exit(9)
"""
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    number = int(out.stdout.strip())
    assert controller.study.trials[number].state == S.RUNNING
    state = run_trials(controller, evaluator, 3)
    stale = controller.study.trials[number]
    assert stale.state == S.FAIL and "worker stopped" in stale.user_attrs["error"]
    assert state.done == 3 and state.failed == 0
    retried = [t for t in controller.study.trials if t.user_attrs.get("retry_of") == number]
    assert len(retried) == 1 and retried[0].params == stale.params


def test_a_retry_never_queued_is_queued_by_the_next_ask(setup):
    from spotpatch.search._record import mark_retried

    controller, evaluator = setup()
    run_trials(controller, evaluator, 1)
    trial = controller.study.ask(controller.distributions)
    # A process failed the trial for a retry and stopped before it queued the retry.
    mark_retried(controller.storage, trial._trial_id, "its worker stopped")
    controller.study.tell(trial, state=S.FAIL)
    state = run_trials(controller, evaluator, 3)
    assert state.done == 3 and state.failed == 0
    (retry,) = [r for r in controller.records() if r.retry_of == trial.number]
    assert retry.complete and retry.params == trial.params
    assert evaluator.calls[1] == controller.space.config_from_gates(trial.params).to_dict()


def test_a_retry_stopped_before_it_suggested_every_gate_is_retried_with_the_whole_config(setup):
    controller, evaluator = setup()
    first = controller.ask(5)
    controller.tell_failed(first, "its worker died")
    # The retry's worker stops after it suggested one gate of the queued config.
    name = sorted(first.params)[0]
    stopped = controller.study.ask({name: controller.distributions[name]})
    assert stopped.params == {name: first.params[name]} != first.params
    controller.tell_failed(stopped, "its worker died")
    (again,) = [
        t for t in controller.study.trials if t.user_attrs.get("retry_of") == stopped.number
    ]
    assert again.system_attrs["fixed_params"] == first.params
    state = run_trials(controller, evaluator, 1)
    assert state.done == 1 and controller.study.trials[again.number].params == first.params


def test_a_config_whose_worker_dies_each_time_is_retried_then_failed(setup):
    from spotpatch.search import MAX_ATTEMPTS

    controller, evaluator = setup()
    numbers = []
    for _ in range(MAX_ATTEMPTS):
        trial = controller.ask(5)
        numbers.append(trial.number)
        controller.tell_failed(trial, "its worker died")
    records = {r.number: r for r in controller.records()}
    runs = [records[n] for n in numbers]
    assert [r.retry_of for r in runs] == [None, *numbers[:-1]]  # each the retry of the last
    assert len({tuple(sorted(r.params.items())) for r in runs}) == 1
    assert all(r.retried and r.error == "not finished: its worker died" for r in runs[:-1])
    last = runs[-1]
    assert last.state == S.FAIL and not last.retried and last.counts_toward_total()
    assert (
        last.error
        == f"its worker died; {MAX_ATTEMPTS} runs of this config in a row failed: not retried"
    )
    state = run_trials(controller, evaluator, 3)
    assert (state.done, state.failed) == (3, 1) and len(evaluator.calls) == 2


def test_a_stopped_trial_whose_config_was_trained_is_not_trained_again(setup):
    controller, evaluator = setup()
    run_trials(controller, evaluator, 1)
    # A worker killed while it asked: its trial runs with a trained config's gates, unstamped.
    controller.study.enqueue_trial(controller.study.trials[0].params)
    number = controller.study.ask(controller.distributions).number
    controller.stale_after = 0.5
    time.sleep(0.6)
    state = run_trials(controller, evaluator, 3)
    assert state.done == 3 and len(evaluator.calls) == 3
    assert len({tuple(sorted(c.items())) for c in evaluator.calls}) == 3
    (retry,) = [r for r in controller.records() if r.retry_of == number]
    assert retry.duplicate_of == 0 and not retry.counts_toward_total()


def test_early_stopping_prunes_dominated_trials(setup):
    controller, evaluator = setup(early=EarlyStopping(checkpoints=(0.5,), margin=0.0))
    controller.enqueue([controller.space.preset("head")], source="test")
    run_trials(controller, evaluator, 12)
    pruned = [t for t in controller.study.trials if t.state == S.PRUNED]
    done = [t for t in controller.study.trials if t.state == S.COMPLETE]
    assert done and all("intermediate" in t.user_attrs for t in done)
    assert pruned
    for t in pruned:  # each pruned trial was below a no-larger finished trial at its step
        step, value = t.user_attrs["pruned_at"], t.user_attrs["intermediate"]
        assert any(
            d.values[1] <= t.user_attrs["patch_bytes"]
            and d.user_attrs["intermediate"][str(step)] > value[str(step)]
            for d in done
        )


def _fixed_gates(controller, free: str | None = None) -> dict[str, str]:
    """Every gate but ``free`` fixed at its strongest kind."""
    return {
        label: dist.choices[-1]
        for label, dist in controller.distributions.items()
        if label != free
    }


@pytest.mark.filterwarnings("ignore::optuna.exceptions.ExperimentalWarning")
def test_a_config_proposed_again_gets_the_stored_result_and_is_not_trained(setup):
    controller, evaluator = setup("random")
    free = max(controller.distributions, key=lambda g: len(controller.distributions[g].choices))
    choices = controller.distributions[free].choices
    assert len(choices) >= 3
    controller.study.sampler = optuna.samplers.PartialFixedSampler(
        _fixed_gates(controller, free), optuna.samplers.RandomSampler(seed=0)
    )
    state = run_trials(controller, evaluator, len(choices))
    records = controller.records()
    trained = [r for r in records if r.complete]
    duplicates = [r for r in records if r.duplicate_of is not None]
    # Every trained config is new, and the gate's choices are all tried within the total.
    assert len(evaluator.calls) == len(choices) == len(trained) == state.done
    assert len({tuple(sorted(c.items())) for c in evaluator.calls}) == len(choices)
    assert duplicates, "random proposals over a few choices repeat"
    by_number = {r.number: r for r in records}
    for d in duplicates:
        earlier = by_number[d.duplicate_of]
        assert d.state == S.COMPLETE and d.sites == earlier.sites
        assert (d.map, d.patch_bytes, d.artifact_id, d.artifact_sha256) == (
            earlier.map,
            earlier.patch_bytes,
            earlier.artifact_id,
            earlier.artifact_sha256,
        )
        assert not d.counts_toward_total()


@pytest.mark.filterwarnings("ignore::optuna.exceptions.ExperimentalWarning")
def test_a_sampler_that_only_repeats_itself_still_ends(setup):
    from spotpatch.search import MAX_DUPLICATES

    controller, evaluator = setup("random")
    controller.study.sampler = optuna.samplers.PartialFixedSampler(
        _fixed_gates(controller), optuna.samplers.RandomSampler(seed=0)
    )
    state = run_trials(controller, evaluator, 2)
    assert state.done == 2 and len(evaluator.calls) == 2
    duplicates = [r for r in controller.records() if r.duplicate_of is not None]
    assert len(duplicates) == MAX_DUPLICATES


@pytest.mark.filterwarnings("ignore::optuna.exceptions.ExperimentalWarning")
def test_a_config_storing_the_same_tensors_is_a_duplicate(tmp_path, random_base, monkeypatch):
    from spotpatch.search import _controller
    from spotpatch.spaces import PatchConfig

    # The sampler proposes the duplicate every time: the cap ends each ask (kept small here).
    cap = 4
    monkeypatch.setattr(_controller, "MAX_DUPLICATES", cap)
    storage = open_storage(f"sqlite:///{tmp_path}/s.db")
    optuna.create_study(study_name="t", storage=storage, directions=["maximize", "minimize"])
    space = random_base.space(3, granularity="site")
    site = next(s.name for s in space.sites if s.depthwise)
    # dw and full on a depthwise site store (and train) the same tensors.
    assert space.patch_tensors(PatchConfig({site: "dw"})) == space.patch_tensors(
        PatchConfig({site: "full"})
    )
    gates = {label: "shared" for label in space.groups()} | {site: "full"}
    sampler = optuna.samplers.PartialFixedSampler(gates, optuna.samplers.RandomSampler(seed=0))
    controller = StudyController(storage, "t", space, sampler=sampler)
    controller.enqueue([PatchConfig({site: "dw"})], source="relaxation")
    evaluator = FakeEvaluator(space)
    run_trials(controller, evaluator, 2)
    duplicates = [r for r in controller.records() if r.duplicate_of is not None]
    assert len(evaluator.calls) == 2 and len(duplicates) == cap
    assert {r.duplicate_of for r in duplicates} == {0}


def test_processes_sharing_a_study_seed_their_samplers_apart(tmp_path, random_base):
    storage = open_storage(f"sqlite:///{tmp_path}/s.db")
    optuna.create_study(study_name="t", storage=storage, directions=["maximize", "minimize"])
    space = random_base.space(3, granularity="stage")

    def asked(sampling) -> list[dict]:
        """The configs of two controllers (as two drivers) asking one trial each at once."""
        controllers = [StudyController(storage, "t", space, **sampling()) for _ in range(2)]
        trials = [c.ask(100) for c in controllers]
        return [c.config_of(t).to_dict() for c, t in zip(controllers, trials, strict=True)]

    # One seed for both: they propose in lockstep (neither trial is trained when the other asks).
    same = asked(lambda: {"sampler": make_sampler("random", 0)})
    assert same[0] == same[1]
    indices = []

    def sampler_for(index: int):
        indices.append(index)
        return make_sampler("random", index)

    apart = asked(lambda: {"sampler_for": sampler_for})
    assert indices == [0, 1] and apart[0] != apart[1]
    asked(lambda: {"sampler_for": sampler_for})  # later ones (a resume, another host) count on
    assert indices == [0, 1, 2, 3]


def test_a_config_whose_local_worker_stops_each_time_is_retried_then_failed(setup):
    import socket
    import subprocess
    import sys

    from spotpatch.search import MAX_ATTEMPTS
    from spotpatch.search._record import write_heartbeat

    controller, evaluator = setup()
    gone = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                          capture_output=True, text=True, check=True)  # fmt: skip
    dead = {"host": socket.gethostname(), "pid": int(gone.stdout), "time": 0.0}
    numbers = []
    for _ in range(MAX_ATTEMPTS):
        trial = controller.ask(5)  # recovers the last one, whose worker is gone
        numbers.append(trial.number)
        controller._heartbeat.remove(trial.number)
        write_heartbeat(controller.storage, trial._trial_id, dead)
    state = run_trials(controller, evaluator, 3)
    records = {r.number: r for r in controller.records()}
    runs = [records[n] for n in numbers]
    assert [r.retry_of for r in runs] == [None, *numbers[:-1]]
    assert all(r.state == S.FAIL and r.retried for r in runs[:-1])
    assert runs[-1].state == S.FAIL and not runs[-1].retried
    assert runs[-1].error == (
        f"not finished: its worker stopped; {MAX_ATTEMPTS} runs of this config in a row "
        "failed: not retried"
    )
    assert (state.done, state.failed) == (3, 1) and len(evaluator.calls) == 2
