"""Images in, detections out, in numpy: what torchvision's SSD does around its network.

Resizing is PIL's bilinear filter (antialiased when shrinking) bit for bit, as ``predict``
decodes images; decoding, score filtering, top-k and per-class NMS follow torchvision's
``SSD.postprocess_detections`` with the detector's own settings (``manifest.json``'s
``postprocess``).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

__all__ = ["resize_bilinear", "to_batch", "decode_boxes", "nms", "detections", "scaled_xywh"]


def _weights(size_in: int, size_out: int) -> np.ndarray:
    """The (size_out, size_in) matrix of PIL's bilinear (triangle) filter for one axis."""
    scale = size_in / size_out
    support = max(scale, 1.0)
    out = np.zeros((size_out, size_in), dtype=np.float64)
    for i in range(size_out):
        center = (i + 0.5) * scale
        lo = max(int(center - support + 0.5), 0)
        hi = min(int(center + support + 0.5), size_in)
        x = (np.arange(lo, hi) - center + 0.5) / support
        w = np.clip(1.0 - np.abs(x), 0.0, None)
        total = w.sum()
        out[i, lo:hi] = w / total if total else 0.0
    return out


def resize_bilinear(image: np.ndarray, width: int, height: int) -> np.ndarray:
    """An ``H x W x 3`` uint8 image resized to ``height x width`` as PIL's ``BILINEAR`` does:
    horizontal pass then vertical, each in PIL's 22-bit fixed point, rounding to uint8 between
    them."""
    h, w = image.shape[:2]
    if (w, h) == (width, height):
        return image
    x = image.astype(np.int64)
    if w != width:
        x = _fixed_point(np.einsum("ij,hjc->hic", _fixed(_weights(w, width)), x))
    if h != height:
        x = _fixed_point(np.einsum("ij,jwc->iwc", _fixed(_weights(h, height)), x))
    return x.astype(np.uint8)


_BITS = 22  # PIL's PRECISION_BITS for 8-bit images


def _fixed(weights: np.ndarray) -> np.ndarray:
    return np.floor(weights * (1 << _BITS) + 0.5).astype(np.int64)


def _fixed_point(sums: np.ndarray) -> np.ndarray:
    return np.clip((sums + (1 << (_BITS - 1))) >> _BITS, 0, 255)


def to_batch(images: list[np.ndarray], size: tuple[int, int]) -> np.ndarray:
    """``(N, 3, H, W)`` float32 in [0, 1] at the detector's (height, width)."""
    height, width = size
    out = np.empty((len(images), 3, height, width), dtype=np.float32)
    for i, image in enumerate(images):
        out[i] = resize_bilinear(image, width, height).transpose(2, 0, 1) / np.float32(255.0)
    return out


def decode_boxes(codes: np.ndarray, anchors: np.ndarray, weights, clip: float) -> np.ndarray:
    """torchvision's ``BoxCoder.decode_single``: xyxy boxes from regression codes."""
    wx, wy, ww, wh = (np.float32(v) for v in weights)
    widths = anchors[:, 2] - anchors[:, 0]
    heights = anchors[:, 3] - anchors[:, 1]
    ctr_x = anchors[:, 0] + np.float32(0.5) * widths
    ctr_y = anchors[:, 1] + np.float32(0.5) * heights
    dx, dy = codes[:, 0] / wx, codes[:, 1] / wy
    dw = np.minimum(codes[:, 2] / ww, np.float32(clip))
    dh = np.minimum(codes[:, 3] / wh, np.float32(clip))
    pred_x, pred_y = dx * widths + ctr_x, dy * heights + ctr_y
    half_w = np.float32(0.5) * (np.exp(dw) * widths)
    half_h = np.float32(0.5) * (np.exp(dh) * heights)
    return np.stack([pred_x - half_w, pred_y - half_h, pred_x + half_w, pred_y + half_h], axis=1)


def nms(boxes: np.ndarray, scores: np.ndarray, threshold: float) -> np.ndarray:
    """Indices kept by greedy non-maximum suppression, highest score first (torchvision's)."""
    order = np.argsort(-scores, kind="stable")
    areas = (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])
    keep = []
    suppressed = np.zeros(len(boxes), dtype=bool)
    for pos, i in enumerate(order):
        if suppressed[i]:
            continue
        keep.append(i)
        rest = order[pos + 1 :]
        rest = rest[~suppressed[rest]]
        if not len(rest):
            continue
        lt = np.maximum(boxes[i, :2], boxes[rest, :2])
        rb = np.minimum(boxes[i, 2:], boxes[rest, 2:])
        wh = np.clip(rb - lt, 0, None)
        inter = wh[:, 0] * wh[:, 1]
        iou = inter / (areas[i] + areas[rest] - inter)
        suppressed[rest[iou > threshold]] = True
    return np.asarray(keep, dtype=np.int64)


def _softmax(x: np.ndarray) -> np.ndarray:
    e = np.exp(x - x.max(axis=-1, keepdims=True))
    return e / e.sum(axis=-1, keepdims=True)


def detections(
    codes: np.ndarray,
    logits: np.ndarray,
    anchors: np.ndarray,
    size: tuple[int, int],
    post: Mapping[str, Any],
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """One image's detections at the detector's input size: xyxy boxes, scores and labels
    (1-based class positions), best first, as torchvision's SSD gives them."""
    height, width = size
    boxes = decode_boxes(codes, anchors, post["box_weights"], post["box_clip"])
    boxes[:, 0::2] = np.clip(boxes[:, 0::2], 0, width)
    boxes[:, 1::2] = np.clip(boxes[:, 1::2], 0, height)
    scores = _softmax(logits)
    all_boxes, all_scores, all_labels = [], [], []
    for label in range(1, scores.shape[1]):
        score = scores[:, label]
        idx = np.nonzero(score > post["score_thresh"])[0]
        k = min(len(idx), post["topk_candidates"])
        top = idx[np.argsort(-score[idx], kind="stable")[:k]]
        all_boxes.append(boxes[top])
        all_scores.append(score[top])
        all_labels.append(np.full(len(top), label, dtype=np.int64))
    boxes, scores = np.concatenate(all_boxes), np.concatenate(all_scores)
    labels = np.concatenate(all_labels)
    if not len(boxes):
        return boxes.reshape(0, 4), scores, labels
    # Per-class NMS in one pass: each class's boxes moved apart from every other class's.
    offsets = labels.astype(np.float32) * (boxes.max() + 1)
    keep = nms(boxes + offsets[:, None], scores, post["nms_thresh"])
    keep = keep[: post["detections_per_img"]]
    return boxes[keep], scores[keep], labels[keep]


def scaled_xywh(boxes: np.ndarray, size: tuple[int, int], original: tuple[int, int]) -> np.ndarray:
    """xyxy boxes at the detector's (height, width) as ``[x, y, w, h]`` in the original
    image's (height, width) pixels."""
    (height, width), (h, w) = size, original
    out = boxes * np.array([w / width, h / height, w / width, h / height], dtype=np.float32)
    out[:, 2:] -= out[:, :2]
    return out
