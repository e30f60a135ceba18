"""Shared fixtures: a random-init tiny base (fast, no shipped weights needed) and a small
generated benchmark, both built once per session, and study files of that benchmark."""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

import pytest
import torch

# Under pytest-xdist each of its processes trains on one thread: they share the cores.
torch.set_num_threads(
    1 if os.environ.get("PYTEST_XDIST_WORKER") else min(2, torch.get_num_threads())
)

#: Test modules that train for long or start processes or servers: every test in them is slow.
SLOW_MODULES = {
    "test_transfer.py",
    "test_evaluator.py",
    "test_prefix.py",
    "test_relaxation.py",
    "test_run.py",
    "test_export.py",
    "test_confirm.py",
    "test_apply.py",
    "test_backends.py",
    "test_bundle.py",
    "test_fleet.py",
}
#: Markers of tests that start servers or clusters: slow too.
SLOW_MARKERS = {"ray", "postgres", "soak", "hosts"}


#: Where the tests' temporary folders go when the machine has one in memory: a study's SQLite
#: storage commits a few times per trial, and in memory a commit flushes nothing to disk.
MEMORY = Path("/dev/shm")
_OWN_BASETEMP = pytest.StashKey[str]()


@pytest.hookimpl(tryfirst=True)
def pytest_configure(config):
    """The session's temporary folders in memory (:data:`MEMORY`), in a folder of its own that
    goes at its end (``--basetemp`` given, or a pytest-xdist worker: as told)."""
    if config.option.basetemp is None and os.access(MEMORY, os.W_OK):
        config.option.basetemp = tempfile.mkdtemp(prefix="spotpatch-tests-", dir=MEMORY)
        config.stash[_OWN_BASETEMP] = config.option.basetemp


def pytest_unconfigure(config):
    own = config.stash.get(_OWN_BASETEMP, None)
    if own is not None:
        shutil.rmtree(own, ignore_errors=True)


def pytest_collection_modifyitems(config, items):
    """Mark as ``slow`` what :data:`SLOW_MODULES` and :data:`SLOW_MARKERS` name, so that
    ``pytest -m "not slow"`` is a quick loop; ``make test`` runs everything."""
    for item in items:
        if item.path.name in SLOW_MODULES or SLOW_MARKERS & {m.name for m in item.iter_markers()}:
            item.add_marker(pytest.mark.slow)


@pytest.fixture(scope="session")
def random_base():
    from spotpatch.evaluators import load_base

    return load_base("spotpatch-tiny", random_init=True, seed=0, device="cpu")


@pytest.fixture(scope="session")
def bench(tmp_path_factory):
    """The bundled benchmark at a quarter of its size, for two tasks (near and far)."""
    from spotpatch.benchmark import write_benchmark

    out = tmp_path_factory.mktemp("bench") / "bench"
    return write_benchmark(out, scale=0.25, tasks=["shapes-subset", "glyphs"], progress=False)


@pytest.fixture(scope="session")
def bench_study(bench):
    """Writes a study file of the benchmark fixture with some values changed; returns its path.

    ``bench_study(path, "glyphs", seed=3, train={"steps": 6}, search={"storage": url})``: a
    section's changes are a dict of its keys, other keys take their value. The bundled specs'
    repeats (2) and confirmation (3 seeds) are off unless ``search`` names them: tests count
    their trials.
    """
    from dataclasses import replace

    from spotpatch.studies import load_spec, write_spec

    def make(path, name="glyphs", **changes):
        spec = load_spec(bench / "studies" / f"{name}.toml")
        spec = replace(spec, search=replace(spec.search, repeats=1, confirm_seeds=0))
        changes = {
            key: replace(getattr(spec, key), **value) if isinstance(value, dict) else value
            for key, value in changes.items()
        }
        return write_spec(replace(spec, **changes), path)

    return make


@pytest.fixture(scope="session")
def local_ray():
    """One local Ray for every test that runs trials on the Ray backend (starting Ray takes
    seconds): ``run_on_ray`` joins a Ray that is already up and leaves it running."""
    import logging

    import ray

    ray.init(num_cpus=2, include_dashboard=False, logging_level=logging.WARNING,
             log_to_driver=False)  # fmt: skip
    yield
    ray.shutdown()
