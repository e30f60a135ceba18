"""COCO mAP computed the plain way, apart from the evaluators' code: a check on it."""

from __future__ import annotations

__all__ = ["pycocotools_map"]


def pycocotools_map(model, split, category_ids) -> float:
    """AP@[.5:.95] of ``model``'s detections on a split, by pycocotools' own COCOeval run on
    the annotations the split was read from (``split.coco``): what a trial's mAP must equal."""
    import contextlib
    import io

    from pycocotools.cocoeval import COCOeval

    from spotpatch.evaluators import predict

    results = predict(model, split, category_ids)
    if not results:
        return 0.0
    with contextlib.redirect_stdout(io.StringIO()):
        evaluator = COCOeval(split.coco, split.coco.loadRes(results), "bbox")
        evaluator.evaluate()
        evaluator.accumulate()
        evaluator.summarize()
    return max(0.0, float(evaluator.stats[0]))
