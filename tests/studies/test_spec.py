from __future__ import annotations

import pytest

from spotpatch import UserError
from spotpatch.studies import load_spec

GOOD = """
name = "pets"
seed = 3
[data]
train = "ann.json"
train_images = "img"
val = "ann.json"
val_images = "img"
[space]
granularity = "block"
kinds = ["bn", "lora8"]
[train]
steps = 20
lr = 1
[search]
sampler = "gp"
"""


@pytest.fixture
def folder(tmp_path):
    (tmp_path / "ann.json").write_text("{}")
    (tmp_path / "img").mkdir()
    return tmp_path


def _write(folder, text):
    path = folder / "study.toml"
    path.write_text(text)
    return path


def test_a_good_spec(folder):
    spec = load_spec(_write(folder, GOOD))
    assert spec.name == "pets" and spec.seed == 3
    assert spec.data.train == (folder / "ann.json").resolve()  # relative to the file
    assert spec.space.kinds == ("bn", "lora8") and spec.space.granularity == "block"
    assert spec.train.lr == 1.0 and isinstance(spec.train.lr, float)
    assert spec.search.sampler == "gp" and spec.search.trials == 40
    assert spec.data.test is None


@pytest.mark.parametrize(
    "change, message",
    [
        (("seed = 3", "seed = 3\ncolour = 1"), "unknown key 'colour'"),
        (('sampler = "gp"', 'sampler = "gp"\nwarp = 2'), "unknown key 'search.warp'"),
        (('sampler = "gp"', 'sampler = "cma"'), "search.sampler must be one of"),
        (("steps = 20", 'steps = "many"'), "train.steps must be an integer"),
        (("steps = 20", "steps = 0"), "train.steps must be at least 1"),
        (("steps = 20", "batch_size = 1"), "train.batch_size must be at least 2"),
        (("seed = 3", "seed = true"), "seed must be an integer"),
        (('kinds = ["bn", "lora8"]', 'kinds = ["bn", "half"]'), "space.kinds: unknown patch kind"),
        (('kinds = ["bn", "lora8"]', "kinds = [1]"), "space.kinds[0] must be a string"),
        (('kinds = ["bn", "lora8"]', 'kinds = ["shared"]'), "at least one kind"),
        (('granularity = "block"', 'granularity = "layer"'), "space.granularity must be one of"),
        (('val = "ann.json"', 'val = "missing.json"'), "data.val: file not found"),
        (('val_images = "img"', 'val_images = "nope"'), "data.val_images: folder not found"),
        (('train = "ann.json"\n', ""), "missing key 'data.train'"),
        (('name = "pets"', 'name = ""'), "name must not be empty"),
        (("[train]", "[train\n"), "malformed TOML"),
    ],
)
def test_bad_specs_name_the_key(folder, change, message):
    text = GOOD.replace(*change)
    assert text != GOOD
    with pytest.raises(UserError) as info:
        load_spec(_write(folder, text))
    assert message in str(info.value)
    assert "\n" not in str(info.value)


def test_missing_study_file(tmp_path):
    with pytest.raises(UserError, match="study file not found"):
        load_spec(tmp_path / "nope.toml")


def test_the_cli_exits_2_on_a_bad_spec(folder, capsys):
    from spotpatch.cli import main

    path = _write(folder, GOOD.replace('sampler = "gp"', "sampler = 5"))
    assert main(["evaluate", str(path), "--preset", "bn"]) == 2
    assert "search.sampler must be a string" in capsys.readouterr().err


def test_a_kind_no_site_allows_is_refused(folder, random_base):
    """A kind that exists but that no site of the detector allows is caught with the space."""
    from spotpatch.spaces import PatchSpace

    sites = tuple(s for s in random_base.sites if not s.depthwise)
    with pytest.raises(UserError, match="space.kinds: no site"):
        PatchSpace("m", sites, random_base.head(3), kinds=("dw",))


def test_the_example_specs_in_the_repository_load(bench, tmp_path):
    """studies/*.toml read the benchmark at ../demo/bench, where `make demo` writes it."""
    import shutil
    from pathlib import Path

    from spotpatch.studies import load_spec

    repo = Path(__file__).resolve().parents[2]
    examples = sorted((repo / "studies").glob("*.toml"))
    assert len(examples) >= 3
    (tmp_path / "demo").mkdir()
    (tmp_path / "demo" / "bench").symlink_to(bench, target_is_directory=True)
    (tmp_path / "studies").mkdir()
    loaded = 0
    for example in examples:
        copy = tmp_path / "studies" / example.name
        shutil.copy(example, copy)
        if not (bench / "tasks" / example.stem).is_dir():
            continue  # the suite's benchmark holds two of the tasks
        spec = load_spec(copy)
        assert spec.name == example.stem and spec.search.warm_start == "relaxation"
        loaded += 1
    assert loaded >= 2
