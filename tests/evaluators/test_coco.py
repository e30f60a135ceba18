"""Bad input: one clear line naming the problem and exit status 2, never a traceback."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from spotpatch import UserError
from spotpatch.cli import main
from spotpatch.evaluators import load_split, load_task
from spotpatch.studies import DataSpec, StudySpec, write_spec


def _coco(folder, n=3, bad_box=False):
    images_dir = folder / "images"
    images_dir.mkdir(parents=True)
    rng = np.random.default_rng(0)
    data = {
        "images": [],
        "annotations": [],
        "categories": [{"id": 7, "name": "dot"}, {"id": 3, "name": "bar"}],
    }
    for i in range(1, n + 1):
        Image.fromarray(rng.integers(0, 255, (40, 60, 3), dtype=np.uint8)).save(
            images_dir / f"{i}.png"
        )
        data["images"].append({"id": i, "file_name": f"{i}.png", "width": 60, "height": 40})
        data["annotations"].append(
            {"id": i, "image_id": i, "category_id": 7 if i % 2 else 3, "bbox": [5, 5, 20, 10]}
        )
    if bad_box:
        data["annotations"].append(
            {"id": 99, "image_id": 1, "category_id": 7, "bbox": [5, 5, 0, 10]}
        )
    path = folder / "ann.json"
    path.write_text(json.dumps(data))
    return path, images_dir, data


def _study(tmp_path, ann, images):
    data = DataSpec(train=ann, train_images=images, val=ann, val_images=images)
    return write_spec(StudySpec(name="t", path=Path(), data=data), tmp_path / "study.toml")


def _fails(capsys, argv, pattern):
    code = main(argv)
    err = capsys.readouterr().err.strip()
    assert code == 2
    assert len(err.splitlines()) == 1 and "Traceback" not in err
    assert pattern in err, err
    return err


def test_labels_are_contiguous_in_category_order(tmp_path):
    ann, images, _ = _coco(tmp_path)
    task = load_task("t", train=(ann, images), val=(ann, images), resize=lambda w, h: (30, 20))
    assert task.classes == ("bar", "dot") and task.category_ids == (3, 7)
    assert task.train.labels[0].tolist() == [2]  # category 7 -> label 2
    assert task.train.images[0].shape == (3, 20, 30)
    # Boxes follow the resize: 60x40 -> 30x20 halves them.
    assert task.train.boxes[0].tolist() == [[2.5, 2.5, 12.5, 7.5]]


def test_degenerate_boxes_are_dropped_with_a_count(tmp_path, caplog):
    ann, images, _ = _coco(tmp_path, bad_box=True)
    with caplog.at_level(logging.WARNING, logger="spotpatch"):
        split, _ = load_split(ann, images, resize=lambda w, h: (w, h), progress=False)
    assert split.num_objects == 3
    assert "dropped 1 degenerate boxes" in caplog.text


def test_missing_annotation_file(tmp_path, capsys):
    ann, images, _ = _coco(tmp_path)
    study = _study(tmp_path, ann, images)
    ann.unlink()
    _fails(capsys, ["evaluate", str(study), "--preset", "head"], "file not found")


def test_malformed_json(tmp_path, capsys):
    ann, images, _ = _coco(tmp_path)
    study = _study(tmp_path, ann, images)
    ann.write_text('{"images": [')
    _fails(capsys, ["evaluate", str(study), "--preset", "head"], "malformed JSON")


@pytest.mark.parametrize(
    "edit, message",
    [
        (lambda d: d["annotations"][0].update(image_id=42), "refers to unknown image id 42"),
        (lambda d: d["annotations"][0].update(category_id=5), "refers to unknown category id 5"),
        (lambda d: d["annotations"][0].update(bbox=[1, 2]), "malformed bbox"),
        (lambda d: d.pop("categories"), "missing or malformed 'categories'"),
        (lambda d: d["images"].append(dict(d["images"][0])), "image id 1 appears twice"),
    ],
)
def test_inconsistent_annotations(tmp_path, capsys, edit, message):
    ann, images, data = _coco(tmp_path)
    edit(data)
    ann.write_text(json.dumps(data))
    study = _study(tmp_path, ann, images)
    _fails(capsys, ["evaluate", str(study), "--preset", "head"], message)


def test_undecodable_image_is_named(tmp_path, capsys):
    ann, images, _ = _coco(tmp_path)
    (images / "2.png").write_bytes(b"not a png at all")
    study = _study(tmp_path, ann, images)
    err = _fails(capsys, ["evaluate", str(study), "--preset", "head"], "cannot decode image")
    assert "2.png" in err


def test_missing_image_is_named(tmp_path):
    ann, images, _ = _coco(tmp_path)
    (images / "3.png").unlink()
    with pytest.raises(UserError, match="image not found: .*3.png"):
        load_split(ann, images, resize=lambda w, h: (w, h), progress=False)


def test_val_with_other_categories_is_refused(tmp_path):
    ann, images, data = _coco(tmp_path)
    data["categories"][0]["name"] = "spot"
    other = tmp_path / "val.json"
    other.write_text(json.dumps(data))
    with pytest.raises(UserError, match="categories differ"):
        load_task("t", train=(ann, images), val=(other, images), resize=lambda w, h: (w, h))
