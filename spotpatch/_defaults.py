"""The names and numbers the command line offers before any room loads: the presets, the
patch dtypes, the backends, the default storage, the dashboard's address, the prediction
threshold and the shipped base's pretraining recipe. Each is defined here once and used by its
room from here.

Imports nothing: ``spotpatch --help`` and argument errors answer without loading torch.
"""

from __future__ import annotations

__all__ = [
    "BACKENDS",
    "DASHBOARD_HOST",
    "DEFAULT_PORT",
    "DEFAULT_SCORE_THRESHOLD",
    "DEFAULT_STORAGE",
    "DTYPES",
    "PRESETS",
    "PRETRAIN",
]

#: The fixed recipes (the existing techniques), smallest first.
PRESETS = ("head", "bn", "dw", "lora4", "tail", "full")
#: The storage dtypes of patch tensors, as a study file and ``bundle --dtype`` name them.
DTYPES = ("float32", "float16", "int8")
#: Where a study's trials run.
BACKENDS = ("local", "ray")
#: The storage of a study file that names none (relative to the working directory).
DEFAULT_STORAGE = "sqlite:///spotpatch.db"
#: ``predict`` drops detections scoring below this.
DEFAULT_SCORE_THRESHOLD = 0.05
#: The dashboard server listens here only.
DASHBOARD_HOST = "127.0.0.1"
DEFAULT_PORT = 8050
#: The recipe of the shipped base (``spotpatch pretrain``'s defaults).
PRETRAIN = {"steps": 4000, "batch_size": 32, "lr": 3e-3, "weight_decay": 1e-4, "hflip": True}
