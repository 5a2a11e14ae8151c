"""Progress bars for uploads and downloads (tqdm), at the CLI edge only.

Shown on stderr when it is a terminal and the verb does not print ``--json``; silent
otherwise. tqdm is imported only when a bar is actually drawn. A bar removes itself
when its transfer is complete; :meth:`Bars.close` removes any left (after an error).
"""

from __future__ import annotations

import sys
from typing import Any


class TqdmProgress:
    """An fsspec-style progress callback (``set_size``, ``relative_update``) drawing a
    tqdm bar of bytes on stderr. It closes itself once the total is reached."""

    def __init__(self, label: str) -> None:
        from tqdm import tqdm

        self._bar: Any = tqdm(
            desc=label,
            total=None,
            unit="B",
            unit_scale=True,
            unit_divisor=1024,
            file=sys.stderr,
            leave=False,
            dynamic_ncols=True,
        )
        self.closed = False

    def set_size(self, size: int | None) -> None:
        """Set the total number of bytes."""
        if self.closed:
            return
        self._bar.total = size
        self._bar.refresh()
        self._close_if_done()

    def relative_update(self, inc: int = 1) -> None:
        """Advance by ``inc`` bytes (negative when a failed attempt is taken back)."""
        if self.closed:
            return
        self._bar.update(inc)
        self._close_if_done()

    def _close_if_done(self) -> None:
        total = self._bar.total
        if total is not None and self._bar.n >= total:
            self.close()

    def close(self) -> None:
        """Remove the bar (idempotent)."""
        if not self.closed:
            self.closed = True
            self._bar.close()


class Bars:
    """The progress factory given to the manager (``phase -> callback``); remembers the
    bars it made so that :meth:`close` can remove them whatever happened."""

    def __init__(self) -> None:
        self._made: list[TqdmProgress] = []

    def __call__(self, phase: str) -> TqdmProgress:
        bar = TqdmProgress(phase)
        self._made.append(bar)
        return bar

    def close(self) -> None:
        """Remove every bar still shown."""
        for bar in self._made:
            bar.close()
        self._made.clear()


def wanted(json_output: bool, stream: Any = None) -> bool:
    """True when bars should be drawn: ``stream`` (stderr) is a terminal, not ``--json``."""
    stream = sys.stderr if stream is None else stream
    try:
        return not json_output and bool(stream.isatty())
    except (AttributeError, ValueError):  # no isatty, or a closed stream
        return False


def bars(enabled: bool) -> Bars | None:
    """A :class:`Bars` factory when ``enabled`` and tqdm is installed, else None (silent)."""
    if not enabled:
        return None
    try:
        import tqdm  # noqa: F401
    except ImportError:  # a bar is a nicety, never a reason to fail
        return None
    return Bars()
