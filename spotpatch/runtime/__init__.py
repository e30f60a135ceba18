"""Running a bundle's tasks on a device, without PyTorch.

A bundle (``spotpatch bundle --out DIR``) holds the base detector's graph and weights once
(``base.onnx``, ``base.safetensors``), one small file per task (its answer's patch) and
``manifest.json``. ``Fleet(DIR).detector(TASK)`` makes the task's detector from them; it needs
numpy, onnxruntime and safetensors only (``pip install 'spotpatch[runtime]'``) and never
imports torch.
"""

from __future__ import annotations

from spotpatch.runtime._detections import resize_bilinear
from spotpatch.runtime._fleet import BUNDLE_FORMAT, BUNDLE_VERSION, MANIFEST, Fleet, TaskDetector
from spotpatch.runtime._predict import image_ids, predict_files

__all__ = [
    "Fleet",
    "TaskDetector",
    "predict_files",
    "image_ids",
    "resize_bilinear",
    "MANIFEST",
    "BUNDLE_FORMAT",
    "BUNDLE_VERSION",
]
