"""The demo's study files: the benchmark's specs with the demo's budget, loadable as they are."""

from __future__ import annotations

from spotpatch.demo import DEMO_STEPS, DEMO_TASKS, DEMO_TRIALS, demo_spec
from spotpatch.studies import load_spec


def test_demo_specs_load_with_the_demo_budget(bench, tmp_path):
    assert list(DEMO_TASKS.values()) == ["near", "middle", "far"]
    out = tmp_path / "demo"
    out.mkdir()
    (out / "bench").symlink_to(bench, target_is_directory=True)
    storage = f"sqlite:///{out / 'spotpatch.db'}"
    spec = load_spec(demo_spec(out / "bench", "glyphs", out, storage))
    assert (spec.train.steps, spec.search.trials) == (DEMO_STEPS, DEMO_TRIALS)
    assert spec.search.presets == ("head", "full") and spec.search.storage == storage
    assert spec.search.warm_start == "relaxation"
    assert spec.data.train.is_file()
