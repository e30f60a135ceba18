"""ONNX export of a patched SSD-style detector: its raw head outputs, without postprocessing.

torchvision's SSD postprocessing (score filtering, top-k, batched NMS over a data-dependent
number of boxes) exports poorly and every runtime has its own fast NMS, so the ONNX model stops
at the head: a fixed-size image batch in, box regressions and class logits out, plus the anchors
they refer to. Decoding is torchvision's ``BoxCoder(weights=(10, 10, 5, 5)).decode_single``
against ``anchors``, then softmax over the logits (class 0 is the background) and NMS.

``spotpatch bundle`` exports the same raw outputs with the class head as graph inputs, shared
by every task (``_base_graph``).

Imports torch, torchvision and ONNX lazily; ``onnx`` and ``onnxruntime`` are the optional extra
``spotpatch[onnx]``.
"""

from __future__ import annotations

import os
import warnings
from collections import OrderedDict
from pathlib import Path

import torch
from torch import Tensor, nn

from spotpatch._errors import UserError

__all__ = [
    "RawSSD",
    "export_onnx",
    "ONNX_INPUTS",
    "ONNX_OUTPUTS",
    "ONNX_OPSET",
]

ONNX_INPUTS = ("images",)
ONNX_OUTPUTS = ("bbox_regression", "cls_logits", "anchors")
ONNX_OPSET = 17


class RawSSD(nn.Module):
    """An SSD-style detector up to its head: normalization, backbone and head, no NMS.

    Args:
        model: a torchvision ``SSD`` (spotpatch-tiny, ``torchvision:ssdlite...``) in eval mode.
        image_size: the (height, width) it runs at; images must already have that size.

    ``forward(images)`` takes ``(N, 3, H, W)`` float images in [0, 1] and returns
    ``bbox_regression`` ``(N, A, 4)``, ``cls_logits`` ``(N, A, C)`` (C counts the background)
    and ``anchors`` ``(N, A, 4)`` (xyxy, pixels of the input size; the same for every image).

    Example:
        >>> raw = RawSSD(applied.model, (128, 128))  # doctest: +SKIP
        >>> boxes, logits, anchors = raw(torch.rand(1, 3, 128, 128))  # doctest: +SKIP
    """

    def __init__(self, model: nn.Module, image_size: tuple[int, int]):
        from torchvision.models.detection.image_list import ImageList
        from torchvision.models.detection.ssd import SSD

        super().__init__()
        if not isinstance(model, SSD):
            raise UserError(
                f"ONNX export supports SSD-style detectors only, not {type(model).__name__}"
            )
        self.model = model.eval()
        transform = model.transform
        self.register_buffer("mean", torch.tensor(transform.image_mean).view(1, -1, 1, 1))
        self.register_buffer("std", torch.tensor(transform.image_std).view(1, -1, 1, 1))
        self.image_size = tuple(image_size)
        device = next(model.parameters()).device
        # Anchors depend only on the input size: measured once with a dummy forward.
        with torch.no_grad():
            probe = torch.zeros(1, 3, *self.image_size, device=device)
            features = self._features(probe)
            anchors = model.anchor_generator(ImageList(probe, [self.image_size]), features)[0]
        self.register_buffer("anchors", anchors.detach().clone())

    def _features(self, x: Tensor) -> list[Tensor]:
        features = self.model.backbone(x)
        if isinstance(features, Tensor):
            features = OrderedDict([("0", features)])
        return list(features.values())

    def forward(self, images: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        x = (images - self.mean) / self.std
        head = self.model.head(self._features(x))
        # One copy per image, as torchvision has them; it also keeps the anchors a computed
        # output, which constant folding cannot turn into a nameless initializer.
        anchors = self.anchors.expand(images.shape[0], -1, -1)
        return head["bbox_regression"], head["cls_logits"], anchors


def _need_onnx():
    try:
        import onnx
    except ImportError:
        raise UserError(
            "ONNX export needs the onnx package: pip install 'spotpatch[onnx]'"
        ) from None
    return onnx


def export_onnx(model: nn.Module, image_size: tuple[int, int], path: str | Path) -> Path:
    """Write ``model`` (a patched SSD-style detector, eval mode) to ``path`` as ONNX.

    The model's raw outputs are exported (see :class:`RawSSD`): input ``images`` ``(N, 3, H, W)``
    in [0, 1] with a dynamic batch and a fixed ``image_size``; outputs ``bbox_regression``,
    ``cls_logits`` and ``anchors``. Postprocessing with NMS is left to the runtime. The file is
    written under a temporary name beside ``path`` and renamed into place.

    Raises:
        UserError: a detector that is not SSD-style, or a missing ``onnx`` package.
    """
    _need_onnx()  # torch's exporter needs it; say so clearly
    raw = RawSSD(model, image_size).eval()
    path = Path(path)
    if path.is_dir():
        raise UserError(f"--onnx {path} is a folder; give a file name such as model.onnx")
    path.parent.mkdir(parents=True, exist_ok=True)
    device = raw.anchors.device
    dummy = torch.rand(1, 3, *raw.image_size, device=device)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        with torch.no_grad(), warnings.catch_warnings():
            # The TorchScript exporter, on purpose: the dynamo one needs onnxscript, and the raw
            # SSD graph is plain convolutions and reshapes that this one handles well.
            warnings.simplefilter("ignore", DeprecationWarning)
            torch.onnx.export(
                raw,
                (dummy,),
                tmp,
                dynamo=False,
                input_names=list(ONNX_INPUTS),
                output_names=list(ONNX_OUTPUTS),
                dynamic_axes={
                    "images": {0: "batch"},
                    "bbox_regression": {0: "batch"},
                    "cls_logits": {0: "batch"},
                    "anchors": {0: "batch"},
                },
                opset_version=ONNX_OPSET,
            )
        os.replace(tmp, path)
    finally:
        Path(tmp).unlink(missing_ok=True)
    return path
