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


def test_boxes_are_clipped_to_their_image_and_dropped_outside_it(tmp_path, caplog):
    ann, images, data = _coco(tmp_path, bad_box=True)  # images are 60x40
    data["annotations"][0]["bbox"] = [-5, 30, 20, 20]  # crosses the left and bottom edges
    data["annotations"][1]["bbox"] = [70, 5, 10, 10]  # right of the image
    data["annotations"][2]["bbox"] = [10, -8, 10, 8]  # touches the top edge from above: no area
    data["annotations"].append({"id": 8, "image_id": 2, "category_id": 3, "bbox": [50, 0, 9, 9]})
    ann.write_text(json.dumps(data))
    with caplog.at_level(logging.WARNING, logger="spotpatch"):
        split, _ = load_split(ann, images, resize=lambda w, h: (w // 2, h // 2), progress=False)
    warned = [r.getMessage() for r in caplog.records]
    assert warned == [
        f"{ann}: dropped 1 degenerate boxes (width or height <= 0); dropped 2 boxes outside "
        "their image; clipped 1 boxes to their image"
    ]
    # Training boxes at half size: the clipped one, the one inside; the ground truth alike.
    assert [b.tolist() for b in split.boxes] == [
        [[0.0, 15.0, 7.5, 20.0]],
        [[25.0, 0.0, 29.5, 4.5]],
        [],
    ]
    assert split.coco.loadAnns(1)[0]["bbox"] == [0.0, 30.0, 15.0, 10.0]
    assert sorted(split.coco.getAnnIds()) == [1, 8]


def test_an_image_of_another_size_than_listed_is_taken_at_its_size(tmp_path, caplog):
    ann, images, data = _coco(tmp_path)
    for entry in data["images"][1:]:
        entry["width"], entry["height"] = 120, 80  # the files are 60x40
    data["annotations"][1]["bbox"] = [40, 20, 40, 40]  # inside 120x80, clipped to 60x40
    ann.write_text(json.dumps(data))
    with caplog.at_level(logging.WARNING, logger="spotpatch"):
        split, _ = load_split(ann, images, resize=lambda w, h: (w, h), progress=False)
    warned = [r.getMessage() for r in caplog.records]
    assert warned == [
        f"{ann}: 2 images differ in size from their width/height (e.g. 2.png is 60x40, listed "
        "as 120x80); using the files' sizes",
        f"{ann}: clipped 1 boxes to their image",
    ]
    assert split.sizes == ((60, 40),) * 3
    assert split.boxes[1].tolist() == [[40.0, 20.0, 60.0, 40.0]]
    assert split.coco.imgs[2]["width"] == 60


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
