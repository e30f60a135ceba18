"""COCO bbox mAP with pycocotools: AP@[.5:.95] and AP50 of a detector on a split."""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
from torch import nn

from spotpatch.evaluators._coco import CocoSplit, quiet
from spotpatch.evaluators._progress import progress_bar

__all__ = ["predict", "coco_map", "results_map", "EVAL_BATCH", "Detect"]

#: ``detect(indices)``: the model's detections of those images of the split (from cached
#: activations); what ``model(images)`` gives for them.
Detect = Callable[[Sequence[int]], list[dict]]

#: Fixed, so a patch scores the same in every run and on every machine count of workers.
EVAL_BATCH = 32


@torch.no_grad()
def predict(
    model: nn.Module,
    split: CocoSplit,
    category_ids: tuple[int, ...],
    *,
    progress: bool | None = False,
    detect: Detect | None = None,
) -> list[dict]:
    """COCO results: ``image_id``, ``category_id``, ``bbox`` (xywh, original pixels), ``score``.

    ``detect`` computes a batch's detections in place of ``model(images)``."""
    model.eval()
    torch.set_flush_denormal(True)
    device = next(model.parameters()).device
    results = []
    order = range(0, len(split), EVAL_BATCH)
    for start in progress_bar(order, desc="scoring", unit="batch", progress=progress):
        idx = range(start, min(start + EVAL_BATCH, len(split)))
        if detect is None:
            outputs = model([split.images[i].to(device, torch.float32) / 255.0 for i in idx])
        else:
            outputs = detect(idx)
        for i, out in zip(idx, outputs, strict=True):
            w, h = split.sizes[i]
            rh, rw = split.images[i].shape[1:]
            boxes = out["boxes"].cpu() * torch.tensor([w / rw, h / rh, w / rw, h / rh])
            boxes[:, 2:] -= boxes[:, :2]
            for box, label, score in zip(
                boxes.tolist(), out["labels"].tolist(), out["scores"].tolist(), strict=True
            ):
                results.append(
                    {
                        "image_id": split.image_ids[i],
                        "category_id": category_ids[label - 1],
                        "bbox": [round(v, 3) for v in box],
                        "score": round(score, 5),
                    }
                )
    return results


def coco_map(
    model: nn.Module,
    split: CocoSplit,
    category_ids: tuple[int, ...],
    *,
    progress: bool | None = False,
    detect: Detect | None = None,
) -> tuple[float, float]:
    """(AP@[.5:.95], AP50) on a split, with pycocotools; 0.0 when nothing is detected."""
    results = predict(model, split, category_ids, progress=progress, detect=detect)
    return results_map(split, results)


def results_map(split: CocoSplit, results: list[dict]) -> tuple[float, float]:
    """(AP@[.5:.95], AP50) of COCO detection results (``predict``'s, or a runtime's) on a
    split, with pycocotools; 0.0 when nothing is detected."""
    from pycocotools.cocoeval import COCOeval

    if not results or not split.coco.getAnnIds():
        return 0.0, 0.0
    with quiet():
        detections = split.coco.loadRes(results)
        evaluator = COCOeval(split.coco, detections, "bbox")
        evaluator.evaluate()
        evaluator.accumulate()
        evaluator.summarize()
    ap, ap50 = (max(0.0, float(v)) for v in evaluator.stats[:2])
    return ap, ap50
