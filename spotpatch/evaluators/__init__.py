"""How a config is scored: COCO tasks, detectors and their bases, the patch trainer, the prefix
cache of frozen activations and COCO mAP.

Imports only from ``spaces``.
"""

from __future__ import annotations

from spotpatch.evaluators._base import Base, load_base, resolve_device, save_base
from spotpatch.evaluators._coco import CocoSplit, Task, decode_image, load_split, load_task
from spotpatch.evaluators._detectors import (
    Detector,
    get_detector,
    list_detectors,
    register_detector,
)
from spotpatch.evaluators._evaluator import EvalResult, PatchEvaluator, evaluate
from spotpatch.evaluators._metrics import coco_map, predict, results_map
from spotpatch.evaluators._prefix import (
    cache_size_problem,
    clear_prefix_caches,
    prefix_cache_bytes,
)
from spotpatch.evaluators._pretrain import PRETRAIN_SETTINGS, PretrainResult, pretrain
from spotpatch.evaluators._progress import progress_bar
from spotpatch.evaluators._trainer import TrainSettings, train_detector

__all__ = [
    "decode_image",
    "Base",
    "CocoSplit",
    "Detector",
    "EvalResult",
    "PRETRAIN_SETTINGS",
    "PatchEvaluator",
    "PretrainResult",
    "Task",
    "TrainSettings",
    "cache_size_problem",
    "clear_prefix_caches",
    "coco_map",
    "results_map",
    "evaluate",
    "get_detector",
    "list_detectors",
    "load_base",
    "load_split",
    "load_task",
    "predict",
    "prefix_cache_bytes",
    "pretrain",
    "progress_bar",
    "register_detector",
    "resolve_device",
    "save_base",
    "train_detector",
]
