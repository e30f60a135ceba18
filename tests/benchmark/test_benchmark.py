"""Tests for the bundled benchmark generator: layout, COCO validity, tight boxes, determinism,
task subsets, atomic writing and the study TOMLs."""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import tomllib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from pycocotools.coco import COCO

from spotpatch._errors import UserError
from spotpatch.benchmark import BENCHMARK_TASKS, SOURCE_CLASSES, study_spec, write_benchmark
from spotpatch.benchmark._render import render_image
from spotpatch.studies import DEFAULT_STORAGE, load_spec

SCALE = 0.02
# At SCALE: round(3000 * 0.02) = 60, round(300 * 0.02) = 6, round(512 * 0.02) = 10, and the
# 128-image splits fall to the minimum of 4.
SOURCE_COUNTS = {"train": 60, "val": 6}
TASK_COUNTS = {"train": 10, "val": 4, "test": 4}


def _hashes(root: Path) -> dict[str, str]:
    return {
        str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(root.rglob("*"))
        if p.is_file()
    }


def _load_coco(path: Path) -> COCO:
    with contextlib.redirect_stdout(io.StringIO()):
        return COCO(str(path))


def _mask_box(mask: np.ndarray) -> tuple[int, int, int, int]:
    rows, cols = np.flatnonzero(mask.any(1)), np.flatnonzero(mask.any(0))
    return (int(cols[0]), int(rows[0]), int(cols[-1] - cols[0] + 1), int(rows[-1] - rows[0] + 1))


@pytest.fixture(scope="module")
def full(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("full") / "bench"
    return write_benchmark(out, seed=0, scale=SCALE, progress=False)


def _splits(root: Path) -> list[tuple[Path, dict[str, int], tuple[str, ...]]]:
    sets = [(root / "source", SOURCE_COUNTS, SOURCE_CLASSES)]
    sets += [(root / "tasks" / t.name, TASK_COUNTS, t.classes) for t in BENCHMARK_TASKS]
    return [(folder / split, {split: n}, classes)
            for folder, counts, classes in sets for split, n in counts.items()]  # fmt: skip


def test_constants() -> None:
    assert len(SOURCE_CLASSES) >= 8 and len(set(SOURCE_CLASSES)) == len(SOURCE_CLASSES)
    assert len(BENCHMARK_TASKS) == 10
    names = [t.name for t in BENCHMARK_TASKS]
    assert len(set(names)) == len(names)
    transfers = [t.transfer for t in BENCHMARK_TASKS]
    assert set(transfers) == {"near", "middle", "far"}
    order = {"near": 0, "middle": 1, "far": 2}
    assert [order[t] for t in transfers] == sorted(order[t] for t in transfers)
    for task in BENCHMARK_TASKS:
        assert 3 <= len(task.classes) <= 6 and len(set(task.classes)) == len(task.classes)
        assert task.name == task.name.lower() and " " not in task.name
        assert task.description and "\n" not in task.description


def test_layout_and_counts(full: Path) -> None:
    assert sorted(p.name for p in full.iterdir()) == ["source", "studies", "tasks"]
    assert sorted(p.name for p in (full / "tasks").iterdir()) == sorted(
        t.name for t in BENCHMARK_TASKS
    )
    assert not list(full.parent.glob("*.partial-*")) and not list(full.parent.glob("*.old-*"))
    for folder, counts, _ in _splits(full):
        (n,) = counts.values()
        pngs = sorted(folder.glob("*.png"))
        assert [p.name for p in pngs] == [f"{i:06d}.png" for i in range(n)]
        data = json.loads(folder.with_suffix(".json").read_text())
        assert len(data["images"]) == n
        with Image.open(pngs[0]) as im:
            assert im.format == "PNG" and im.mode == "RGB" and im.size == (128, 128)


def test_coco_files_are_valid(full: Path) -> None:
    for folder, _, classes in _splits(full):
        path = folder.with_suffix(".json")
        coco = _load_coco(path)
        data = json.loads(path.read_text())
        assert data["info"]["seed"] == 0 and {"description", "version"} <= data["info"].keys()
        assert [c["name"] for c in data["categories"]] == list(classes)
        assert [c["id"] for c in data["categories"]] == list(range(1, len(classes) + 1))
        assert [im["id"] for im in data["images"]] == list(range(1, len(data["images"]) + 1))
        for im in data["images"]:
            assert (folder / im["file_name"]).is_file() and "/" not in im["file_name"]
            assert (im["width"], im["height"]) == (128, 128)
        anns = coco.loadAnns(coco.getAnnIds())
        assert anns and len({a["id"] for a in anns}) == len(anns)
        assert min(a["id"] for a in anns) == 1
        for a in anns:
            x, y, w, h = a["bbox"]
            assert all(isinstance(v, float) for v in a["bbox"])
            assert w >= 2 and h >= 2 and x >= 0 and y >= 0 and x + w <= 128 and y + h <= 128
            assert 1 <= a["category_id"] <= len(classes) and a["iscrowd"] == 0
            assert a["area"] == pytest.approx(w * h)
            assert a["image_id"] in coco.imgs


def test_every_class_appears(full: Path) -> None:
    for folder, _, classes in _splits(full):
        if folder.name == "train":
            data = json.loads(folder.with_suffix(".json").read_text())
            assert {a["category_id"] for a in data["annotations"]} == set(
                range(1, len(classes) + 1)
            ), folder


@pytest.mark.parametrize("task_index", range(len(BENCHMARK_TASKS) + 1))
def test_boxes_are_tight_around_drawn_pixels(task_index: int) -> None:
    for image_index in range(3):
        r = render_image(0, task_index, 0, image_index)
        assert r.objects and r.image.shape == (128, 128, 3) and r.image.dtype == np.uint8
        changed = (r.composite != r.background).any(axis=2)
        union = np.zeros_like(changed)
        for obj in r.objects:
            assert obj.mask.any() and not (obj.mask & union).any(), "objects overlap"
            union |= obj.mask
            # The box is tight around the object's own mask, and around what was really drawn.
            assert obj.bbox == _mask_box(obj.mask)
            assert obj.bbox == _mask_box(obj.mask & changed)
        assert not (changed & ~union).any(), "pixels drawn outside every object's mask"


def test_written_boxes_match_the_renderer(full: Path) -> None:
    for task_index, folder in [(0, full / "source"), (7, full / "tasks" / "glyphs")]:
        data = json.loads((folder / "train.json").read_text())
        for image_id in (1, 2):
            r = render_image(0, task_index, 0, image_id - 1)
            anns = [a for a in data["annotations"] if a["image_id"] == image_id]
            assert [(a["category_id"], tuple(a["bbox"])) for a in anns] == [
                (o.category_id, tuple(float(v) for v in o.bbox)) for o in r.objects
            ]
            with Image.open(folder / "train" / f"{image_id - 1:06d}.png") as im:
                assert np.array_equal(np.asarray(im), r.image)


def test_same_seed_is_byte_identical_and_other_seed_differs(full: Path, tmp_path: Path) -> None:
    again = write_benchmark(tmp_path / "again", seed=0, scale=SCALE, progress=False)
    assert _hashes(again) == _hashes(full)
    other = write_benchmark(tmp_path / "other", seed=1, scale=SCALE, tasks=[], progress=False)
    theirs, ours = _hashes(other / "source"), _hashes(full / "source")
    assert theirs.keys() == ours.keys()
    assert sum(theirs[k] != ours[k] for k in ours) > 0.9 * len(ours)


def test_task_subset_in_two_processes_matches_full_run(full: Path, tmp_path: Path) -> None:
    out = write_benchmark(
        tmp_path / "glyphs", scale=SCALE, tasks=["glyphs"], progress=False, processes=2
    )
    assert [p.name for p in (out / "tasks").iterdir()] == ["glyphs"]
    assert [p.name for p in (out / "studies").iterdir()] == ["glyphs.toml"]
    ours = _hashes(out)
    assert ours == {k: v for k, v in _hashes(full).items() if k in ours}
    assert any(k.startswith("tasks/glyphs/train/") for k in ours)


def test_unknown_task_is_a_user_error(tmp_path: Path) -> None:
    with pytest.raises(UserError, match="no-such-task"):
        write_benchmark(tmp_path / "out", scale=SCALE, tasks=["no-such-task"], progress=False)
    assert list(tmp_path.iterdir()) == []


def test_existing_output_needs_overwrite(tmp_path: Path) -> None:
    out = tmp_path / "out"
    out.mkdir()
    (out / "keep.txt").write_text("old")
    with pytest.raises(UserError, match="exists and is not empty") as err:
        write_benchmark(out, scale=SCALE, tasks=[], progress=False)
    assert "\n" not in str(err.value) and "overwrite=True" in str(err.value)
    assert [p.name for p in out.iterdir()] == ["keep.txt"]
    assert (out / "keep.txt").read_text() == "old"
    assert write_benchmark(out, scale=SCALE, tasks=[], progress=False, overwrite=True) == out
    assert not (out / "keep.txt").exists() and (out / "source" / "train.json").is_file()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]


def test_empty_output_folder_is_fine(tmp_path: Path) -> None:
    (tmp_path / "out").mkdir()
    out = write_benchmark(tmp_path / "out", scale=SCALE, tasks=[], progress=False)
    assert (out / "source" / "val.json").is_file() and out == (tmp_path / "out").resolve()


def test_failure_leaves_nothing_behind(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    out = tmp_path / "out"
    out.mkdir()
    (out / "keep.txt").write_text("old")
    calls = []

    def boom(job: tuple) -> list:
        calls.append(job)
        if len(calls) > 5:
            raise RuntimeError("disk full")
        return []

    monkeypatch.setattr("spotpatch.benchmark._write.render_job", boom)
    with pytest.raises(RuntimeError, match="disk full"):
        write_benchmark(out, scale=SCALE, tasks=[], progress=False, overwrite=True)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]
    assert [p.name for p in out.iterdir()] == ["keep.txt"]


@pytest.mark.parametrize("bad", [{"scale": 0.0}, {"scale": float("nan")}, {"seed": -1}])
def test_bad_arguments_are_user_errors(tmp_path: Path, bad: dict) -> None:
    with pytest.raises(UserError):
        write_benchmark(tmp_path / "out", progress=False, **bad)


def test_study_tomls_parse_and_point_at_the_data(full: Path) -> None:
    for task in BENCHMARK_TASKS:
        path = full / "studies" / f"{task.name}.toml"
        text = path.read_text()
        assert text.startswith(f'# Bundled benchmark task "{task.name}" ({task.transfer} ')
        assert load_spec(path) == study_spec(task, full, seed=0)
        spec = tomllib.loads(text)
        assert spec["name"] == task.name and spec["seed"] == 0
        for key in ("train", "val", "test"):
            assert (path.parent / spec["data"][key]).resolve().is_file()
            assert (path.parent / spec["data"][f"{key}_images"]).resolve().is_dir()
        assert spec["base"] == {"model": "spotpatch-tiny"}
        assert spec["space"]["kinds"] == ["bn", "dw", "lora4", "full"]
        assert spec["train"] == {
            "steps": 300,
            "batch_size": 16,
            "lr": 0.01,
            "norm_lr_scale": 3.0,
            "lora_lr_scale": 3.0,
        }
        assert spec["search"]["trials"] == 30 and spec["search"]["sampler"] == "descent"
        assert spec["search"]["repeats"] == 2 and "tolerance" not in spec["search"]  # 1 point
        assert spec["search"]["confirm_seeds"] == 3
        assert spec["search"]["storage"] == DEFAULT_STORAGE
    assert study_spec(BENCHMARK_TASKS[0], full, seed=7).seed == 7
