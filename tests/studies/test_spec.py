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
        (('sampler = "gp"', 'sampler = "gp"\nrepeats = 0'), "search.repeats must be at least 1"),
        (
            ('sampler = "gp"', 'sampler = "gp"\ntolerance = -1.0'),
            "search.tolerance must be at least",
        ),
        (
            ('sampler = "gp"', 'sampler = "gp"\nstale_after = 0.5'),
            "search.stale_after must be at least 1",
        ),
        (("steps = 20", 'steps = "many"'), "train.steps must be an integer"),
        (("steps = 20", "steps = 0"), "train.steps must be at least 1"),
        (("steps = 20", "batch_size = 1"), "train.batch_size must be at least 2"),
        (("steps = 20", "steps = 20\nnorm_lr_scale = 0.0"), "train.norm_lr_scale must be"),
        (("steps = 20", "steps = 20\nlora_lr_scale = -1"), "train.lora_lr_scale must be"),
        (
            ("steps = 20", 'steps = 20\nprefix_cache = "lots"'),
            "train.prefix_cache must be auto, off or a size such as 512MiB, got 'lots'",
        ),
        (("seed = 3", "seed = true"), "seed must be an integer"),
        (('kinds = ["bn", "lora8"]', 'kinds = ["bn", "half"]'), "space.kinds: unknown patch kind"),
        (('kinds = ["bn", "lora8"]', "kinds = [1]"), "space.kinds[0] must be a string"),
        (('kinds = ["bn", "lora8"]', 'kinds = ["shared"]'), "at least one kind"),
        (('granularity = "block"', 'granularity = "layer"'), "space.granularity must be one of"),
        (
            ('granularity = "block"', 'granularity = "block"\ndtype = "int4"'),
            "space.dtype must be one of float32, float16, int8",
        ),
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


@pytest.mark.parametrize("dtype", ["float32", "float16", "int8"])
def test_every_storage_dtype_is_accepted(folder, dtype):
    text = GOOD.replace('granularity = "block"', f'granularity = "block"\ndtype = "{dtype}"')
    assert load_spec(_write(folder, text)).space.dtype == dtype


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


def _specs(folder):
    """Specs of every shape: the defaults, odd strings, presets and every optional key."""
    from dataclasses import replace
    from pathlib import Path

    from spotpatch.studies import BaseSpec, DataSpec, SearchSpec, SpaceSpec, StudySpec, TrainSpec

    (folder / "data" / "img").mkdir(parents=True)
    ann = folder / "data" / "ann.json"
    ann.write_text("{}")
    (folder / "base.safetensors").write_text("")
    img = folder / "data" / "img"
    plain = StudySpec(name="pets", path=Path("unused.toml"), data=DataSpec(ann, img, ann, img))
    return [
        plain,
        replace(
            plain,
            name='odd "name" \\ with\ttabs, ünïcødé ✓, emoji 🐕, DEL \x7f and\nnewline',
            seed=12,
            data=DataSpec(ann, img, ann, img, test=ann, test_images=img),
            base=BaseSpec(
                model="torchvision:ssdlite320_mobilenet_v3_large",
                checkpoint=folder / "base.safetensors",
                device="cuda:1",
            ),
            space=SpaceSpec(granularity="stage", kinds=("bn", "lora8", "full"), dtype="float16"),
            train=TrainSpec(steps=7, batch_size=2, lr=1e-05, hflip=True),
            search=SearchSpec(
                trials=3,
                sampler="gp",
                warm_start="none",
                backend="ray",
                workers=4,
                storage='postgresql://u:p@db/spot"patch',
                artifacts=folder / "store" / "patches",
                ray_address="auto",
                early_stopping=True,
                checkpoints=(0.5,),
                relaxation_lambdas=(0.0, 2.0, 1e20),
                presets=("head", "full"),
                repeats=2,
                tolerance=0.5,
            ),
        ),
        replace(plain, train=TrainSpec(lr=2.0), search=SearchSpec(presets=("bn",))),
    ]


@pytest.mark.parametrize("where", ["beside", "nested/deeper", ".."])
def test_written_specs_load_back_as_they_were(tmp_path, where):
    from dataclasses import replace

    from spotpatch.studies import write_spec

    folder = tmp_path / "a" / "b"
    for i, spec in enumerate(_specs(folder)):
        path = folder / where / f"study{i}.toml"
        written = write_spec(spec, path)
        assert written == path.resolve() and written.is_file()
        assert load_spec(written) == replace(spec, path=path.resolve())
        assert not list(written.parent.glob(".*"))  # nothing staged is left beside it


def test_written_specs_show_the_usual_keys_and_relative_paths(tmp_path):
    import tomllib

    from spotpatch.studies import DEFAULT_STORAGE, spec_toml, write_spec

    spec = _specs(tmp_path)[0]
    path = write_spec(spec, tmp_path / "studies" / "pets.toml", comment="one\ntwo")
    text = path.read_text()
    assert text.startswith("# one\n# two\nname = ")
    assert text == spec_toml(load_spec(path), comment="one\ntwo")
    raw = tomllib.loads(text)
    assert raw["data"]["train"] == "../data/ann.json"
    assert raw["base"] == {"model": "spotpatch-tiny"}
    kinds = ["bn", "dw", "lora4", "full"]
    assert raw["space"] == {"granularity": "site", "kinds": kinds, "dtype": "float32"}
    assert raw["train"] == {
        "steps": 300,
        "batch_size": 16,
        "lr": 0.01,
        "norm_lr_scale": 3.0,
        "lora_lr_scale": 3.0,
    }
    assert raw["search"] == {
        "trials": 40,
        "sampler": "nsga2",
        "warm_start": "relaxation",
        "backend": "local",
        "workers": 1,
        "storage": DEFAULT_STORAGE,
    }


def test_the_default_storage_is_defined_once():
    from spotpatch.studies import DEFAULT_STORAGE, SearchSpec

    assert SearchSpec().storage == DEFAULT_STORAGE
