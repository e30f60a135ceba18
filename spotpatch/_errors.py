"""The one exception type for bad user input, shared by every room.

The CLI turns a :class:`UserError` into one line on stderr and exit status 2; anything else is a
bug and keeps its traceback.
"""

from __future__ import annotations

__all__ = ["UserError"]


class UserError(ValueError):
    """Bad input from the user: a missing file, a malformed dataset, an invalid study spec.

    The message is one line that names the problem (and the file or key involved).
    """
