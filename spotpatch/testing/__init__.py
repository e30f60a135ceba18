"""Helpers for tests and benchmarks, as ``optuna.testing`` is for Optuna's: never used by the
rooms themselves.

``synthetic_study`` writes a spotpatch study in seconds, without training, through the same
record writer as real studies; ``load_in_chromium`` loads a dashboard page in headless Chromium
and says whether every plot drew. Imports from any room.
"""

from __future__ import annotations

from spotpatch.testing._browser import BrowserLoad, find_chromium, load_in_chromium
from spotpatch.testing._synthetic import (
    SYNTHETIC_SITES,
    synthetic_meta,
    synthetic_site_bytes,
    synthetic_study,
)

__all__ = [
    "SYNTHETIC_SITES",
    "BrowserLoad",
    "find_chromium",
    "load_in_chromium",
    "synthetic_meta",
    "synthetic_site_bytes",
    "synthetic_study",
]
