"""Observers of the phases of a create: the core says where it is, an observer may act.

The manager (and the storage layer, for ``mid-upload``) calls :func:`reached` at each
phase below. Nothing is installed by cryostash itself: with no observer a call costs one
empty loop. The crash tests install one that SIGKILLs the process at a phase, as a power
cut or the OOM killer would (``tests/support/crashing.py``), to prove the commit protocol
(see ``docs/reliability.md``); the in-process gc tests install one that raises.

A leaf module (imports nothing of cryostash), so that any layer may call it. Observers
run in the thread that reached the phase (``mid-upload``: an upload thread); what an
observer raises propagates from :func:`reached`.

Phases of ``CheckpointManager.create``, in order:

- ``after-dump``: the engine has written the image into scratch; nothing is uploaded.
- ``mid-upload``: the first chunk object is stored, the others are not (other upload
  threads may be halfway through theirs; on local disk, the others are temporary files).
  Reached in the storage layer, when it has stored the first object of a create.
- ``after-upload``: every blob is stored; no manifest.
- ``after-manifest``: the manifest is written; the catalog row is still PENDING
  ("before the catalog commit").
- ``after-commit``: the row is COMMITTED; no event is recorded and scratch is not
  cleaned yet.

Phases of a restore (:data:`RESTORE_PHASES`):

- ``mid-download``: the first chunk of an eager restore is written into scratch and not
  yet counted by the transfer's progress (the others may be on their way). Reached in
  the transfer layer (:func:`cryostash.transfer.unpack.unpack`); the daemon's tests
  hold a restore there to disconnect its client.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Callable, Iterator

#: Every phase :func:`reached` is called with, in the order a create reaches them.
PHASES = ("after-dump", "mid-upload", "after-upload", "after-manifest", "after-commit")
#: The phases of a restore :func:`reached` is called with.
RESTORE_PHASES = ("mid-download",)

#: An observer: called with the phase reached.
Observer = Callable[[str], None]

_observers: tuple[Observer, ...] = ()
_lock = threading.Lock()


def reached(phase: str) -> None:
    """Call every installed observer with ``phase`` (one of :data:`PHASES` or
    :data:`RESTORE_PHASES`)."""
    for observer in _observers:
        observer(phase)


def add_observer(observer: Observer) -> None:
    """Install ``observer``: :func:`reached` calls it from now on (until removed)."""
    global _observers
    with _lock:
        _observers = (*_observers, observer)


def remove_observer(observer: Observer) -> None:
    """Uninstall ``observer`` (once; nothing if it is not installed)."""
    global _observers
    with _lock:
        if observer in _observers:
            i = _observers.index(observer)
            _observers = _observers[:i] + _observers[i + 1 :]


@contextlib.contextmanager
def observe(observer: Observer) -> Iterator[None]:
    """``observer`` installed for the duration of a ``with`` block."""
    add_observer(observer)
    try:
        yield
    finally:
        remove_observer(observer)
