"""Fixtures of the studies' tests: tiny real studies that build in seconds."""

from __future__ import annotations

import pytest

from spotpatch.search import run_trials
from spotpatch.studies import load_spec, load_study, open_controller, open_storage
from spotpatch.studies._setup import evaluator_of


@pytest.fixture(scope="session")
def head_gates():
    """Gate sets of the head side: ``lora`` puts LoRA on the box regressors, ``full`` patches
    the class convs whole."""
    from types import SimpleNamespace

    return SimpleNamespace(
        lora={f"head.regression_head.module_list.{i}": "lora4" for i in range(5)},
        full={f"head.classification_head.module_list.{i}": "full" for i in range(5)},
    )


@pytest.fixture(scope="session")
def head_side_study(bench, bench_study):
    """``head_side_study(folder, gate_sets, dtype, full, task, **search)``: study ``task``
    (default ``glyphs``) in ``folder``'s storage, one trial per gate decision (and the full
    fine-tune last with ``full``), as ``run`` makes it; ``search`` sets more ``[search]``
    keys. Returns its storage URL, spec, evaluator and the study. Gate sets that patch the head
    side only (class head, box regressors, class convs) need no backward pass through the
    backbone."""

    def make(folder, gate_sets, dtype="float32", full=False, task="glyphs", **search):
        url = f"sqlite:///{folder}/s.db"
        spec_path = bench_study(
            bench / "studies" / f"{task}-{folder.name}.toml",
            task,
            # On the CPU, as the checks score: mAP is reproduced exactly on the same device.
            base={"device": "cpu"},
            space={"dtype": dtype},
            train={"steps": 6, "batch_size": 8},
            search={"warm_start": "none", "storage": url, **search},
        )
        spec = load_spec(spec_path)
        evaluator = evaluator_of(spec, progress=False)
        configs = [evaluator.space.config_from_gates(g) for g in gate_sets]
        configs += [evaluator.space.preset("full")] if full else []
        controller = open_controller(spec, evaluator)
        assert controller.enqueue(configs, source="test") == len(configs)
        # What run_study does with 1 worker.
        state = run_trials(controller, evaluator, len(configs), seed=spec.seed)
        assert state.done == len(configs) and state.failed == 0
        return url, spec, evaluator, load_study(spec.name, open_storage(url))

    return make
