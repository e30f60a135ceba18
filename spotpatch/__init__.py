"""spotpatch: per-task patches for a shared mobile detector, searched as a multi-objective study.

Rooms, in the order data flows (a room imports only from rooms before it):
``spaces`` -> ``evaluators`` -> ``search`` -> ``studies`` -> ``dashboard``; ``cli`` is thin.
"""

from __future__ import annotations

from spotpatch._errors import UserError

__version__ = "0.1.0"
__all__ = ["UserError", "__version__"]
