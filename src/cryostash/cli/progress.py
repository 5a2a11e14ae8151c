"""Progress bars for every long operation (tqdm), at the CLI edge only.

Shown on stderr when it is a terminal and the verb does not print ``--json``; silent
otherwise. tqdm is imported only when a bar is actually drawn. What a bar counts comes
from the phase it is made for (:data:`cryostash.transfer.progress.PHASES`): bytes
(``upload``, ``download``, ``import``, ``verify``), items (``gc: blobs deleted``,
``rebuild: manifests read``), or nothing (``dump``: a spinner and the time elapsed). A
bar removes itself when its count is complete, or when its phase ends; :meth:`Bars.close`
removes any left (after an error).
"""

from __future__ import annotations

import itertools
import sys
import threading
from typing import Any

from cryostash.transfer.progress import PHASES, Phase

#: How often a spinner turns (seconds).
SPIN_S = 0.2


class TqdmProgress:
    """An fsspec-style progress callback (``set_size``, ``relative_update``) drawing a
    tqdm bar on stderr: of bytes when ``unit`` is ``B``, else of items (``blobs``...).
    It closes itself once the total is reached."""

    def __init__(self, label: str, unit: str = "B") -> None:
        from tqdm import tqdm

        in_bytes = unit == "B"
        self._bar: Any = tqdm(
            desc=label,
            total=None,
            unit=unit if in_bytes else f" {unit}",
            unit_scale=in_bytes,
            unit_divisor=1024,
            file=sys.stderr,
            leave=False,
            dynamic_ncols=True,
        )
        self.closed = False

    def set_size(self, size: int | None) -> None:
        """Set the total (bytes or items)."""
        if self.closed:
            return
        self._bar.total = size
        self._bar.refresh()
        self._close_if_done()

    def relative_update(self, inc: int = 1) -> None:
        """Advance by ``inc`` (negative when a failed attempt is taken back)."""
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


class Spinner:
    """A phase without a count (``dump``): a spinner and the time elapsed, turned by a
    thread every :data:`SPIN_S` seconds until :meth:`close`."""

    def __init__(self, label: str) -> None:
        from tqdm import tqdm

        self._label = label
        self._bar: Any = tqdm(
            desc=label,
            total=None,
            bar_format="{desc} {elapsed}",
            file=sys.stderr,
            leave=False,
            dynamic_ncols=True,
        )
        self.closed = False
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._spin, name="cryostash-spinner", daemon=True)
        self._thread.start()

    def _spin(self) -> None:
        for mark in itertools.cycle("|/-\\"):
            self._bar.set_description_str(f"{self._label} {mark}")  # the time moves on too
            if self._stop.wait(SPIN_S):
                return

    def set_size(self, size: int | None) -> None:
        """Nothing is counted."""

    def relative_update(self, inc: int = 1) -> None:
        """Nothing is counted."""

    def close(self) -> None:
        """Stop turning and remove the spinner (idempotent)."""
        if not self.closed:
            self.closed = True
            self._stop.set()
            self._thread.join()
            self._bar.close()


class Bars:
    """The progress factory given to the repository (``phase -> callback``); remembers
    the bars it made so that :meth:`close` can remove them whatever happened."""

    def __init__(self) -> None:
        self._made: list[TqdmProgress | Spinner] = []

    def __call__(self, phase: str) -> TqdmProgress | Spinner:
        shown = PHASES.get(phase, Phase(phase, "B"))
        bar = Spinner(shown.label) if shown.unit is None else TqdmProgress(shown.label, shown.unit)
        self._made.append(bar)
        return bar

    def write(self, line: str) -> None:
        """Print ``line`` on stderr above any bar shown (the bars are drawn again under it)."""
        from tqdm import tqdm

        tqdm.write(line, file=sys.stderr)

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
