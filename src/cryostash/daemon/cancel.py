"""Cancelling an operation whose client went away, at the points where it is safe.

The event loop cancels a request's handler when its client disconnects (aiohttp's
``handler_cancellation``); :class:`~cryostash.daemon.runner.Runner` then sets the
operation's :class:`threading.Event`. The operation itself runs on a worker thread and
cannot be interrupted from outside, so it is asked to stop where an interrupted command
(Ctrl-C) would stop: each byte count its transfers report (the upload of a create, the
download of a restore, a prefetch) goes through a :class:`CancellableProgress`, which
raises :class:`~cryostash.errors.Interrupted` once the event is set. The operation then
unwinds as from any failure at that point: a create undoes its reservation, blobs and
manifest and gives a stopped process back; a restore discards its partial files; the
scratch folder is removed (:mod:`cryostash.operations`).

What is not cancelled, by design: an engine already running (a ``criu dump`` in progress
finishes; a ``criu restore`` in progress finishes and its process runs, the restore is
then recorded as usual), and everything after the last byte of a transfer (a create's
manifest and commit). Killing CRIU half-way could leave a process frozen or
half-restored, which an interrupted command never does either.

The event reaches the operation's thread through :func:`bound` (a thread-local); the
repositories of the daemon's pool are built with :func:`progress_for` as their progress
factory, which a transfer calls from the operation's thread when it starts.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterator

from cryostash.errors import Interrupted

_current = threading.local()


@contextlib.contextmanager
def bound(event: threading.Event) -> Iterator[None]:
    """``event`` is the cancellation of the operation this thread runs, for the block."""
    _current.event = event
    try:
        yield
    finally:
        _current.event = None


def check(event: threading.Event | None) -> None:
    """Raise :class:`Interrupted` if ``event`` is set."""
    if event is not None and event.is_set():
        raise Interrupted("cancelled: the client went away before the operation ended")


class CancellableProgress:
    """A transfer's progress that raises :class:`Interrupted` once ``event`` is set
    (called from the transfer's worker threads; an ``Event`` read is thread-safe)."""

    def __init__(self, event: threading.Event) -> None:
        self._event = event

    def set_size(self, size: int | None) -> None:
        check(self._event)

    def relative_update(self, inc: int = 1) -> None:
        check(self._event)


#: The phases (:data:`cryostash.transfer.progress.PHASES`) whose progress cancels: the
#: transfers of a create, a restore, a prefetch. Others (``dump``, gc's, ...) run on.
CANCELLABLE = frozenset({"upload", "download"})


def progress_for(phase: str) -> CancellableProgress | None:
    """The progress of ``phase`` starting now on this thread: cancellable if it is a
    transfer (:data:`CANCELLABLE`) of an operation with a cancellation event, else None."""
    event: threading.Event | None = getattr(_current, "event", None)
    return CancellableProgress(event) if event is not None and phase in CANCELLABLE else None
