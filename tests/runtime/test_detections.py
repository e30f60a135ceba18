"""The runtime's numpy parts against what they stand in for: PIL's resize, torchvision's SSD
postprocessing, and the int8 layout of ``spotpatch.spaces``."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from spotpatch.runtime import resize_bilinear
from spotpatch.runtime._detections import detections
from spotpatch.runtime._fleet import _dequantized, _unfolded
from spotpatch.spaces import from_stored, to_stored


@pytest.mark.parametrize("size", [(128, 128), (77, 50), (300, 200), (40, 130)])
def test_resize_follows_pil_bilinear(size):
    rng = np.random.default_rng(0)
    image = rng.integers(0, 256, (96, 160, 3), dtype=np.uint8)
    want = np.asarray(Image.fromarray(image).resize(size, Image.Resampling.BILINEAR))
    got = resize_bilinear(image, *size)
    assert got.dtype == np.uint8
    np.testing.assert_array_equal(got, want)  # bit for bit


def test_detections_are_torchvisions(random_base):
    model = random_base.model
    post = {
        "score_thresh": model.score_thresh,
        "nms_thresh": model.nms_thresh,
        "detections_per_img": model.detections_per_img,
        "topk_candidates": model.topk_candidates,
        "box_weights": list(model.box_coder.weights),
        "box_clip": model.box_coder.bbox_xform_clip,
    }
    g = torch.Generator().manual_seed(0)
    anchors = torch.rand(600, 2, generator=g) * 100
    anchors = torch.cat([anchors, anchors + 5 + torch.rand(600, 2, generator=g) * 30], dim=1)
    codes = torch.randn(2, 600, 4, generator=g)
    logits = torch.randn(2, 600, 5, generator=g) * 3
    head = {"bbox_regression": codes, "cls_logits": logits}
    want = model.postprocess_detections(head, [anchors, anchors], [(128, 128)] * 2)
    for i, w in enumerate(want):
        boxes, scores, labels = detections(
            codes[i].numpy(), logits[i].numpy(), anchors.numpy(), (128, 128), post
        )
        assert len(scores) == len(w["scores"]) > 10
        order = np.lexsort((labels, -scores))
        expected = np.lexsort((w["labels"].numpy(), -w["scores"].numpy()))
        np.testing.assert_allclose(scores[order], w["scores"].numpy()[expected], atol=1e-6)
        np.testing.assert_array_equal(labels[order], w["labels"].numpy()[expected])
        np.testing.assert_allclose(boxes[order], w["boxes"].numpy()[expected], atol=1e-4)


def test_int8_tensors_read_as_spaces_reads_them():
    g = torch.Generator().manual_seed(0)
    tensors = {
        "conv.weight": torch.randn(8, 4, 3, 3, generator=g),
        "conv.lora_A": torch.randn(4, 36, generator=g),
        "conv.lora_B": torch.randn(8, 4, generator=g),
        "head.bias": torch.randn(8, generator=g),
        "bn.weight": torch.rand(8, generator=g) + 0.5,
        "bn.bias": torch.randn(8, generator=g),
        "bn.running_mean": torch.randn(8, generator=g),
        "bn.running_var": torch.rand(8, generator=g) + 0.1,
    }
    shapes = {n: tuple(t.shape) for n, t in tensors.items()}
    eps = {"bn": 1e-3}
    for dtype in ("float32", "float16", "int8"):
        stored = to_stored(tensors, dtype, eps)
        want = from_stored(stored, shapes, dtype, eps)
        got = _dequantized({n: t.numpy() for n, t in stored.items()})
        if dtype == "int8":
            _unfolded(got, {"bn.running_mean", "bn.running_var"}, eps)
        assert set(got) == set(want)
        for name, value in want.items():
            assert got[name].dtype == np.float32
            np.testing.assert_array_equal(got[name], value.float().numpy())
