"""spotpatch: per-task patches for a shared mobile detector, searched as a multi-objective study.

Rooms, in the order data flows (a room imports only from rooms before it):
``spaces`` -> ``evaluators`` -> ``search`` -> ``studies`` -> ``benchmark`` -> ``dashboard``.
``runtime`` (a bundle on a device) imports no room and never torch; ``studies`` writes bundles
for it.
``_errors`` (the one error type) and ``_files`` (reading the user's files, swapping a folder in)
serve every room. What a study stores is written and read by one module, ``search._record``.
On top: ``demo``, which prepares the demo's files and names its steps, and ``cli``, which is
thin and runs those steps; nothing imports ``cli``. ``testing`` (synthetic studies, the
headless-browser check) serves the tests and benchmarks only.
"""

from __future__ import annotations

from spotpatch._errors import UserError

__version__ = "0.1.0"
__all__ = ["UserError", "__version__"]
