"""Image files through a bundle's task: COCO detection results, as ``spotpatch predict`` writes.

Reading image files needs Pillow (installed with spotpatch); the detector itself takes arrays.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

from spotpatch._defaults import DEFAULT_SCORE_THRESHOLD
from spotpatch._errors import UserError
from spotpatch.runtime._fleet import Fleet

__all__ = ["predict_files", "image_ids"]

#: Images per session run.
_BATCH = 32


def image_ids(paths: Sequence[Path]) -> tuple[int, ...]:
    """COCO's own naming first (``000000397133.jpg`` is image 397133), else the list order."""
    stems = [p.stem for p in paths]
    if all(s.isdigit() for s in stems) and len({int(s) for s in stems}) == len(stems):
        return tuple(int(s) for s in stems)
    return tuple(range(len(paths)))


def _read_image(path: Path) -> np.ndarray:
    from PIL import Image, UnidentifiedImageError

    if not path.is_file():
        raise UserError(f"image not found: {path}")
    try:
        with Image.open(path) as img:
            return np.asarray(img.convert("RGB"), dtype=np.uint8)
    except (UnidentifiedImageError, OSError, ValueError) as e:
        raise UserError(f"cannot decode image {path}: {e}") from None


def predict_files(
    bundle: str | Path,
    task: str,
    images: Sequence[str | Path],
    *,
    score_threshold: float = DEFAULT_SCORE_THRESHOLD,
) -> list[dict]:
    """COCO results of a bundle's task on image files: ``image_id``, ``category_id``, ``bbox``
    (``[x, y, w, h]`` in the image's pixels) and ``score``, one dict per detection; image ids
    as ``spotpatch predict`` gives them.

    Raises:
        UserError: a bad bundle or task, an unreadable image, a threshold outside [0, 1].
    """
    if not 0.0 <= score_threshold <= 1.0:
        raise UserError(f"the score threshold must be in [0, 1], got {score_threshold}")
    paths = [Path(p) for p in images]
    if not paths:
        raise UserError("no images given")
    detector = Fleet(bundle).detector(task)
    ids = image_ids(paths)
    results = []
    for start in range(0, len(paths), _BATCH):
        batch = [_read_image(p) for p in paths[start : start + _BATCH]]
        for image_id, found in zip(ids[start:], detector(batch), strict=False):
            for box, score, category in zip(
                found["boxes"].tolist(),
                found["scores"].tolist(),
                found["category_ids"].tolist(),
                strict=True,
            ):
                if score >= score_threshold:
                    results.append(
                        {
                            "image_id": image_id,
                            "category_id": int(category),
                            "bbox": [round(v, 3) for v in box],
                            "score": round(score, 5),
                        }
                    )
    return results
