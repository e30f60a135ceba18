"""The bundled benchmark: a seeded, procedural object-detection benchmark in COCO format.

It holds a *source* set of filled shapes, used to pretrain the base detector, and ten *target
tasks* that range from near transfer (a subset of the source classes) to far transfer
(stroke-drawn letters, night-time images, fine-grained notches). :func:`write_benchmark` renders
it to disk with one study file per task (:func:`study_spec`); the same seed and scale give
byte-identical files.

Imports from ``studies`` (the study spec and its writer), ``spaces`` (the presets) and
``evaluators`` (the progress bar only); nothing imports it but the CLI, the demo, the tests and
the benchmark scripts.
"""

from __future__ import annotations

from spotpatch.benchmark._tasks import BENCHMARK_TASKS, SOURCE_CLASSES, BenchmarkTask
from spotpatch.benchmark._write import study_spec, write_benchmark

__all__ = ["BENCHMARK_TASKS", "SOURCE_CLASSES", "BenchmarkTask", "study_spec", "write_benchmark"]
