"""Running an exported patch: base + patch on image files, COCO detection results out."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from spotpatch._defaults import DEFAULT_SCORE_THRESHOLD
from spotpatch._errors import UserError
from spotpatch.evaluators import CocoSplit, decode_image, load_base, predict
from spotpatch.runtime import image_ids
from spotpatch.spaces import load_patch

__all__ = ["predict_images", "DEFAULT_SCORE_THRESHOLD"]


def predict_images(
    patch_dir: str | Path,
    images: Sequence[str | Path],
    *,
    score_threshold: float = DEFAULT_SCORE_THRESHOLD,
    checkpoint: str | Path | None = None,
    device: str = "auto",
    progress: bool | None = False,
) -> list[dict]:
    """Detect objects with base + patch on image files; COCO results, one dict per detection.

    The base is the patch's model with its default weights (the shipped ones for
    ``spotpatch-tiny``) or ``checkpoint``; a patch made for another base (sha256) is refused.

    Each result is ``{"image_id", "category_id", "bbox", "score"}``: ``bbox`` is
    ``[x, y, width, height]`` in the original image's pixels; ``category_id`` is the task's
    COCO category id when the patch records them (``task.category_ids``, written by
    ``export``), else the class's position in ``task.classes`` counting from 1. ``image_id`` is
    the file name's stem as an integer when every stem is a distinct number (COCO's naming),
    else the image's index in ``images`` (from 0).

    Raises:
        UserError: a bad patch folder, a patch for another base, an unreadable image, a
            threshold outside [0, 1].

    Example:
        >>> results = predict_images("exports/pets", ["a.jpg", "b.jpg"])  # doctest: +SKIP
        >>> results[0]["bbox"], results[0]["score"]  # doctest: +SKIP
    """
    if not 0.0 <= score_threshold <= 1.0:
        raise UserError(f"the score threshold must be in [0, 1], got {score_threshold}")
    paths = [Path(p) for p in images]
    if not paths:
        raise UserError("no images given")
    patch = load_patch(patch_dir)
    base = load_base(patch.model, checkpoint, device=device)
    applied = base.apply_stored(patch)
    decoded = [decode_image(p, base.detector.resized) for p in paths]
    # predict() reads images, sizes and ids only: no annotations are needed.
    split = CocoSplit(
        annotations=Path(),
        images_dir=Path(),
        coco=None,
        image_ids=image_ids(paths),
        file_names=tuple(str(p) for p in paths),
        sizes=tuple(size for _, size in decoded),
        images=tuple(tensor for tensor, _ in decoded),
        boxes=(),
        labels=(),
    )
    category_ids = patch.category_ids or tuple(range(1, len(patch.classes) + 1))
    results = predict(applied.model, split, category_ids, progress=progress)
    return [r for r in results if r["score"] >= score_threshold]
