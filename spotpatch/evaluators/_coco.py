"""COCO tasks: annotation files and image folders, validated and decoded once.

Category ids map to contiguous labels 1..K (0 is background) in category-id order; the task's
class names keep that order. Images are decoded at load and resized to the detector's input
size; boxes follow, and predictions are mapped back to the original image for COCO evaluation.
Bad input raises :class:`UserError` with one line naming the file and the problem. Input that can
be repaired is, with one warning line per file saying how much: boxes are clipped to their image
(dropped when nothing is left, or when their width or height is not positive), and an image whose
file differs in size from its ``width``/``height`` is taken at the file's size (boxes are in the
file's pixels).
"""

from __future__ import annotations

import contextlib
import io
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor

from spotpatch._errors import UserError
from spotpatch._files import read_json
from spotpatch.evaluators._progress import progress_bar

__all__ = ["CocoSplit", "Task", "load_split", "load_task", "quiet", "sample"]

log = logging.getLogger("spotpatch")
Resize = Callable[[int, int], tuple[int, int]]


@contextlib.contextmanager
def quiet():
    """Silence pycocotools, which prints progress to stdout."""
    with contextlib.redirect_stdout(io.StringIO()):
        yield


@dataclass(frozen=True, eq=False)
class CocoSplit:
    """One split of a task, decoded and resized.

    Attributes:
        annotations: the COCO JSON file.
        images_dir: the folder ``file_name`` is relative to.
        coco: the ground truth as a pycocotools ``COCO`` (degenerate boxes dropped).
        image_ids: COCO image ids, in file order.
        sizes: original (width, height) of each image.
        images: uint8 tensors (3, H, W) at the detector's input size.
        boxes: float tensors (N, 4), xyxy, in the resized image's pixels.
        labels: int64 tensors (N,), contiguous labels 1..K.
    """

    annotations: Path
    images_dir: Path
    coco: Any
    image_ids: tuple[int, ...]
    file_names: tuple[str, ...]
    sizes: tuple[tuple[int, int], ...]
    images: tuple[Tensor, ...]
    boxes: tuple[Tensor, ...]
    labels: tuple[Tensor, ...]

    def __len__(self) -> int:
        return len(self.image_ids)

    @property
    def num_objects(self) -> int:
        return sum(len(b) for b in self.boxes)


def sample(split: CocoSplit, i: int, device, flip: bool = False) -> tuple[Tensor, dict]:
    """Image ``i`` of a split as a detector takes it (float, values in [0, 1]) and its target,
    flipped horizontally with ``flip``."""
    image = split.images[i].to(device, torch.float32) / 255.0
    boxes = split.boxes[i].to(device)
    if flip:
        width = image.shape[-1]
        image = image.flip(-1)
        boxes = torch.stack(
            [width - boxes[:, 2], boxes[:, 1], width - boxes[:, 0], boxes[:, 3]], 1
        )
    return image, {"boxes": boxes, "labels": split.labels[i].to(device)}


@dataclass(frozen=True, eq=False)
class Task:
    """A detection task: its classes and its train/val (and optional test) splits.

    Example:
        >>> task = load_task("pets", train=("train.json", "train"), val=("val.json", "val"),
        ...                  resize=lambda w, h: (128, 128))  # doctest: +SKIP
        >>> task.classes  # doctest: +SKIP
        ('cat', 'dog')
    """

    name: str
    classes: tuple[str, ...]
    category_ids: tuple[int, ...]
    train: CocoSplit
    val: CocoSplit
    test: CocoSplit | None = None

    @property
    def num_classes(self) -> int:
        """Classes including the background."""
        return len(self.classes) + 1


def _read_json(path: Path) -> dict:
    data = read_json(path, what="annotation file")
    if not isinstance(data, dict):
        raise UserError(f"{path}: a COCO file is a JSON object with images and annotations")
    for key in ("images", "annotations", "categories"):
        if not isinstance(data.get(key), list):
            raise UserError(f"{path}: missing or malformed {key!r} list")
    return data


def _field(path: Path, what: str, entry: Any, key: str, types: type | tuple) -> Any:
    if not isinstance(entry, dict) or key not in entry:
        raise UserError(f"{path}: {what} without {key!r}")
    value = entry[key]
    if not isinstance(value, types) or isinstance(value, bool):
        raise UserError(f"{path}: {what} has a malformed {key!r}: {value!r}")
    return value


def _categories(path: Path, data: dict) -> dict[int, str]:
    cats: dict[int, str] = {}
    for entry in data["categories"]:
        cid = _field(path, "a category", entry, "id", int)
        name = _field(path, f"category {cid}", entry, "name", str)
        if cid in cats:
            raise UserError(f"{path}: category id {cid} appears twice")
        cats[cid] = name
    if not cats:
        raise UserError(f"{path}: no categories")
    return dict(sorted(cats.items()))


def decode_image(path: Path, resize: Resize) -> tuple[Tensor, tuple[int, int]]:
    """An image file as a uint8 CHW tensor resized for the detector, and its original (w, h)."""
    from PIL import Image, UnidentifiedImageError

    if not path.is_file():
        raise UserError(f"image not found: {path}")
    try:
        with Image.open(path) as img:
            img = img.convert("RGB")
            size = img.size
            new = resize(*size)
            if new != size:
                img = img.resize(new, Image.Resampling.BILINEAR)
            array = np.asarray(img, dtype=np.uint8)
    except (UnidentifiedImageError, OSError, ValueError) as e:
        raise UserError(f"cannot decode image {path}: {e}") from None
    return torch.from_numpy(array.copy()).permute(2, 0, 1).contiguous(), size


def load_split(
    annotations: str | Path,
    images_dir: str | Path,
    *,
    resize: Resize,
    categories: dict[int, str] | None = None,
    progress: bool | None = None,
) -> tuple[CocoSplit, dict[int, str]]:
    """Read, validate and decode one COCO split.

    Args:
        annotations: the COCO JSON file.
        images_dir: the folder image ``file_name`` entries are relative to.
        resize: maps an image's (width, height) to the size it is decoded at.
        categories: the categories the split must have (those of the train split).
        progress: show a progress bar (None: only on a terminal).

    Returns:
        The split, and its categories {id: name}.
    """
    from pycocotools.coco import COCO

    path = Path(annotations)
    images_dir = Path(images_dir)
    data = _read_json(path)
    cats = _categories(path, data)
    if categories is not None and cats != categories:
        raise UserError(f"{path}: categories differ from the train split's")
    images: dict[int, dict] = {}
    for entry in data["images"]:
        iid = _field(path, "an image", entry, "id", int)
        _field(path, f"image {iid}", entry, "file_name", str)
        if iid in images:
            raise UserError(f"{path}: image id {iid} appears twice")
        images[iid] = entry
    if not images:
        raise UserError(f"{path}: no images")
    if not images_dir.is_dir():
        raise UserError(f"image folder not found: {images_dir}")
    label_of = {cid: i + 1 for i, cid in enumerate(cats)}
    anns, degenerate = [], 0
    for entry in data["annotations"]:
        aid = _field(path, "an annotation", entry, "id", int)
        iid = _field(path, f"annotation {aid}", entry, "image_id", int)
        cid = _field(path, f"annotation {aid}", entry, "category_id", int)
        bbox = _field(path, f"annotation {aid}", entry, "bbox", list)
        if iid not in images:
            raise UserError(f"{path}: annotation {aid} refers to unknown image id {iid}")
        if cid not in cats:
            raise UserError(f"{path}: annotation {aid} refers to unknown category id {cid}")
        if len(bbox) != 4 or not all(
            isinstance(v, int | float) and not isinstance(v, bool) for v in bbox
        ):
            raise UserError(f"{path}: annotation {aid} has a malformed bbox {bbox!r}")
        if bbox[2] <= 0 or bbox[3] <= 0:
            degenerate += 1
            continue
        anns.append(entry)

    ids = tuple(images)
    decoded: dict[int, Tensor] = {}
    sizes: dict[int, tuple[int, int]] = {}
    bar = progress_bar(ids, desc=f"decoding {path.name}", unit="img", progress=progress)
    for iid in bar:
        decoded[iid], sizes[iid] = decode_image(images_dir / images[iid]["file_name"], resize)
    _warn_of_sizes(path, images, sizes)
    anns = _clip_boxes(path, anns, sizes, degenerate)
    clean = dict(
        data,
        images=[dict(images[i], width=sizes[i][0], height=sizes[i][1]) for i in ids],
        annotations=anns,
    )
    with quiet():
        coco = COCO()
        coco.dataset = clean
        coco.createIndex()

    per_image: dict[int, list[dict]] = {i: [] for i in ids}
    for ann in anns:
        if not ann["iscrowd"]:
            per_image[ann["image_id"]].append(ann)
    boxes, labels = [], []
    for iid in ids:
        tensor, (w, h) = decoded[iid], sizes[iid]
        sx, sy = tensor.shape[2] / w, tensor.shape[1] / h
        xywh = torch.tensor([a["bbox"] for a in per_image[iid]], dtype=torch.float32).view(-1, 4)
        xyxy = torch.cat([xywh[:, :2], xywh[:, :2] + xywh[:, 2:]], dim=1)
        boxes.append(xyxy * torch.tensor([sx, sy, sx, sy]))
        labels.append(
            torch.tensor([label_of[a["category_id"]] for a in per_image[iid]], dtype=torch.int64)
        )
    split = CocoSplit(
        annotations=path,
        images_dir=images_dir,
        coco=coco,
        image_ids=ids,
        file_names=tuple(images[i]["file_name"] for i in ids),
        sizes=tuple(sizes[i] for i in ids),
        images=tuple(decoded[i] for i in ids),
        boxes=tuple(boxes),
        labels=tuple(labels),
    )
    return split, cats


def _warn_of_sizes(path: Path, images: dict[int, dict], sizes: dict[int, tuple[int, int]]) -> None:
    """One warning line when image files differ in size from their ``width``/``height``."""
    differ = []
    for iid, entry in images.items():
        listed = (entry.get("width"), entry.get("height"))
        if all(isinstance(v, int | float) and not isinstance(v, bool) for v in listed):
            if tuple(listed) != sizes[iid]:
                differ.append(iid)
    if differ:
        first = images[differ[0]]
        w, h = sizes[differ[0]]
        log.warning(
            "%s: %d images differ in size from their width/height (e.g. %s is %dx%d, listed as "
            "%sx%s); using the files' sizes",
            path,
            len(differ),
            first["file_name"],
            w,
            h,
            first["width"],
            first["height"],
        )


def _clip_boxes(
    path: Path, anns: list[dict], sizes: dict[int, tuple[int, int]], degenerate: int
) -> list[dict]:
    """Annotations with their boxes clipped to their image; those with nothing left dropped.
    One warning line counts what was changed (``degenerate``: boxes dropped earlier)."""
    kept, clipped, outside = [], 0, 0
    for entry in anns:
        x, y, bw, bh = (float(v) for v in entry["bbox"])
        w, h = sizes[entry["image_id"]]
        x0, y0, x1, y1 = max(x, 0.0), max(y, 0.0), min(x + bw, w), min(y + bh, h)
        if x1 <= x0 or y1 <= y0:
            outside += 1
            continue
        ann = dict(entry)
        if (x0, y0, x1, y1) != (x, y, x + bw, y + bh):
            clipped += 1
            ann["bbox"] = [x0, y0, x1 - x0, y1 - y0]
        ann.setdefault("area", float(ann["bbox"][2] * ann["bbox"][3]))
        ann.setdefault("iscrowd", 0)
        kept.append(ann)
    changes = [
        f"dropped {degenerate} degenerate boxes (width or height <= 0)" if degenerate else "",
        f"dropped {outside} boxes outside their image" if outside else "",
        f"clipped {clipped} boxes to their image" if clipped else "",
    ]
    if any(changes):
        log.warning("%s: %s", path, "; ".join(c for c in changes if c))
    return kept


def load_task(
    name: str,
    *,
    train: Sequence[str | Path],
    val: Sequence[str | Path],
    test: Sequence[str | Path] | None = None,
    resize: Resize,
    progress: bool | None = None,
) -> Task:
    """Load a task from (annotations, images folder) pairs; val and test must share train's
    categories."""
    train_split, cats = load_split(*train, resize=resize, progress=progress)
    if train_split.num_objects == 0:
        raise UserError(f"{train_split.annotations}: no usable annotations to train on")
    val_split, _ = load_split(*val, resize=resize, categories=cats, progress=progress)
    test_split = (
        load_split(*test, resize=resize, categories=cats, progress=progress)[0] if test else None
    )
    return Task(
        name=name,
        classes=tuple(cats.values()),
        category_ids=tuple(cats),
        train=train_split,
        val=val_split,
        test=test_split,
    )
