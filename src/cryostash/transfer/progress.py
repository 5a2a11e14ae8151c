"""``Progress``: what a transfer reports its bytes to.

The part of ``fsspec.callbacks.Callback`` that cryostash calls (the CLI's progress bars
and ``fsspec``'s own callbacks both fit): the total, once known, then increments.
Implementations must be thread-safe: a transfer's workers report from several threads.
"""

from __future__ import annotations

from typing import Protocol


class Progress(Protocol):
    """The part of ``fsspec.callbacks.Callback`` that cryostash calls."""

    def set_size(self, size: int | None) -> None: ...

    def relative_update(self, inc: int = 1) -> None: ...
