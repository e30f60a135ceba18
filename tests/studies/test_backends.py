"""One contract for every backend: the same tiny study (three presets, then its confirmation),
run in this process, by a pool of local worker processes and on a local Ray, stores the same
trials: the same configs with the same seeds and bytes, scores equal up to float noise, each
run's tensors as an artifact (confirmation runs have none), and the same answer."""

from __future__ import annotations

import os

import pytest
import torch

from spotpatch.search import study_answer, trial_records
from spotpatch.studies import load_study, open_storage, run_study

BACKENDS = {
    "in-process": {},
    "local workers": {"workers": 2},
    "ray": {"backend": "ray", "workers": 2},
}


def _run(bench_study, folder, options) -> list:
    # Every backend's process trains on one thread, whatever the machine: this one; a local
    # worker, given its share of the cores (2 // 2 workers); a Ray trial, given its one CPU. Float
    # sums then add up in one order and the scores agree.
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        with pytest.MonkeyPatch.context() as mp:
            mp.setattr(os, "cpu_count", lambda: 2)
            return _study(bench_study, folder, options)
    finally:
        torch.set_num_threads(threads)


def _study(bench_study, folder, options):
    url = f"sqlite:///{folder}/s.db"
    spec = bench_study(
        folder / "glyphs.toml",
        "glyphs",
        train={"steps": 6, "batch_size": 8},
        search={
            "presets": ("head", "bn", "full"),
            "warm_start": "none",
            "storage": url,
            "confirm_seeds": 1,
            "tolerance": 100.0,  # the smallest patch is the answer: one deciding pair
        },
    )
    state = run_study(spec, trials=3, progress=False, **options)
    assert (state.done, state.failed, state.running, state.confirmed) == (3, 0, 0, 4)
    return load_study("glyphs", open_storage(url))


def _stored(study) -> tuple[list, list]:
    records = trial_records(study)
    trials = [(r.number, r.preset, r.patch_bytes, r.map) for r in records if r.complete]
    runs = sorted(
        (r.confirm_stage, r.confirm_seed, r.preset, r.patch_bytes, r.map)
        for r in records
        if r.confirmed
    )
    return trials, runs


@pytest.fixture(scope="module")
def in_process(bench_study, tmp_path_factory):
    """The study run in this process: what the other backends are compared with."""
    return _run(bench_study, tmp_path_factory.mktemp("in-process"), BACKENDS["in-process"])


def _check_stored(study) -> None:
    """What every backend stores: each trained trial's tensors (with their sha256), no
    confirmation run's; the answer, confirmed."""
    records = trial_records(study)
    assert all(r.artifact_sha256 for r in records if r.complete)
    assert not any(r.artifact_id for r in records if r.confirmed)
    answer = study_answer(study)
    assert answer.preset == "head" and answer.confirmation.state == "done"


@pytest.mark.slow
def test_in_process_the_study_stores_its_patches_and_answer(in_process):
    _check_stored(in_process)


@pytest.mark.slow
@pytest.mark.parametrize("backend", ["local workers", pytest.param("ray", marks=pytest.mark.ray)])
def test_every_backend_stores_the_trials_of_an_in_process_run(
    backend, bench_study, tmp_path, in_process, request
):
    if backend == "ray":
        request.getfixturevalue("local_ray")
    study = _run(bench_study, tmp_path, BACKENDS[backend])
    trials, runs = _stored(study)
    want_trials, want_runs = _stored(in_process)
    assert [t[:3] for t in trials] == [t[:3] for t in want_trials]
    assert [r[:4] for r in runs] == [r[:4] for r in want_runs]
    # One thread in every process: the same sums, up to what another process's kernels may do.
    for got, want in zip(trials + runs, want_trials + want_runs, strict=True):
        assert got[-1] == pytest.approx(want[-1], abs=2e-3), (got, want)
    _check_stored(study)
    if backend == "local workers":  # the workers ran them, each stamping its pid
        pids = {study.trials[r.number].system_attrs["spotpatch:heartbeat"]["pid"]
                for r in trial_records(study) if r.complete or r.confirmed}  # fmt: skip
        assert os.getpid() not in pids
