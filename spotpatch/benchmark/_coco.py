"""COCO annotation files of the bundled benchmark's splits.

Imports from ``benchmark._backgrounds`` (the image size) and ``_render`` (the box type).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from spotpatch.benchmark._backgrounds import IMAGE_SIZE
from spotpatch.benchmark._render import Box

__all__ = ["Split", "coco_json"]

_VERSION = "1.0"


@dataclass(frozen=True)
class Split:
    """One split of the source set or of a task, as planned before rendering."""

    folder: Path  # the split's image folder; its JSON is folder.with_suffix(".json")
    task_index: int
    split_index: int
    count: int
    classes: tuple[str, ...]
    description: str


def coco_json(split: Split, seed: int, results: Sequence[list[tuple[int, Box]]]) -> dict:
    """The COCO annotation file of a rendered split.

    Args:
        split: The split.
        seed: Benchmark seed, recorded in ``info``.
        results: Per image, in file order, its objects' ``(category_id, box)`` pairs.

    Returns:
        The COCO dict: image ``i`` is ``{i:06d}.png`` with id ``i + 1``; annotation ids count
        from 1 in image order; category ids are ``1..K`` in ``split.classes`` order.
    """
    kind = split.classes[0].split("-")[0]
    supercategory = kind if kind in ("letter", "digit") else "shape"
    images, annotations = [], []
    for i, anns in enumerate(results):
        images.append({"id": i + 1, "file_name": f"{i:06d}.png",
                       "width": IMAGE_SIZE, "height": IMAGE_SIZE})  # fmt: skip
        for cat, (x, y, w, h) in anns:
            annotations.append({
                "id": len(annotations) + 1, "image_id": i + 1, "category_id": cat,
                "bbox": [float(x), float(y), float(w), float(h)], "area": float(w * h),
                "iscrowd": 0,
            })  # fmt: skip
    return {
        "info": {"description": split.description, "version": _VERSION, "seed": seed},
        "images": images,
        "annotations": annotations,
        "categories": [
            {"id": i + 1, "name": n, "supercategory": supercategory}
            for i, n in enumerate(split.classes)
        ],  # fmt: skip
    }
