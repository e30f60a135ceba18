"""Helpers for tests and benchmarks, as ``optuna.testing`` is for Optuna's: never used by the
rooms themselves.

``synthetic_study`` writes a spotpatch study in seconds, without training, through the same
record writer as real studies; ``record`` makes one trial record by hand;
``StandInEvaluator`` scores a config in milliseconds (with known scores, or at random, failing
at random); ``load_in_chromium`` loads a dashboard page in headless Chromium and says whether
every plot drew; ``PostgresServer`` and ``RayNode`` start the servers tests use, and
``TestHosts`` makes several hosts of one machine (network namespaces). Imports from any room.
"""

from __future__ import annotations

from spotpatch.testing._browser import BrowserLoad, find_chromium, load_in_chromium
from spotpatch.testing._coco import pycocotools_map
from spotpatch.testing._hosts import TestHost, TestHosts, namespaces_problem
from spotpatch.testing._records import completed_trial, failed_trial, record
from spotpatch.testing._servers import (
    PostgresServer,
    RayNode,
    ServerError,
    free_port,
    processes_naming,
    study_lock_free,
)
from spotpatch.testing._standin import (
    STAND_IN_ERROR,
    StandInEvaluator,
    evaluation_counts,
    stand_in_worker,
)
from spotpatch.testing._synthetic import (
    SYNTHETIC_SITES,
    synthetic_meta,
    synthetic_site_bytes,
    synthetic_space,
    synthetic_study,
    synthetic_tensors,
)

__all__ = [
    "STAND_IN_ERROR",
    "SYNTHETIC_SITES",
    "BrowserLoad",
    "PostgresServer",
    "RayNode",
    "ServerError",
    "StandInEvaluator",
    "TestHost",
    "TestHosts",
    "completed_trial",
    "evaluation_counts",
    "failed_trial",
    "find_chromium",
    "free_port",
    "load_in_chromium",
    "namespaces_problem",
    "processes_naming",
    "pycocotools_map",
    "record",
    "synthetic_meta",
    "synthetic_site_bytes",
    "synthetic_space",
    "synthetic_study",
    "synthetic_tensors",
    "stand_in_worker",
    "study_lock_free",
]
