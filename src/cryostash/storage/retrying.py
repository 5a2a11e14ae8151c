"""Retries of single store calls that may fail transiently (the manager's, not the chunk
transfers', which :mod:`cryostash.transfer` retries itself).

Only :class:`~cryostash.errors.StorageError` with ``transient=True`` is retried
(timeouts, connection resets, throttling, 5xx: see :mod:`cryostash.storage.translate`),
with the same budget as the chunk transfers (:data:`ATTEMPTS` attempts, exponential
back-off from :data:`BACKOFF_S`, which :mod:`cryostash.transfer.workers` takes from here).
Anything else is raised at once.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import ParamSpec, TypeVar

from cryostash.errors import CheckpointExists, StorageError
from cryostash.storage import Store

P = ParamSpec("P")
T = TypeVar("T")
#: Attempts per call (and per chunk in the pipeline) when the store fails transiently,
#: and the first back-off (doubled at each further attempt).
ATTEMPTS = 3
BACKOFF_S = 0.25


def call(fn: Callable[P, T], /, *args: P.args, **kwargs: P.kwargs) -> T:
    """``fn(*args, **kwargs)``, retried while it raises a transient StorageError.

    Only for calls that are safe to repeat (reads, idempotent deletes, checks).
    """
    for attempt in range(1, ATTEMPTS + 1):
        try:
            return fn(*args, **kwargs)
        except StorageError as exc:
            if not exc.transient or attempt == ATTEMPTS:
                raise
            time.sleep(BACKOFF_S * 2 ** (attempt - 1))
    raise AssertionError("unreachable")  # pragma: no cover


def write_manifest(store: Store, target: str, name: str, data: bytes) -> None:
    """Create-only manifest write, retried on transient failures.

    A transient failure may hide a write that succeeded (the answer was lost). So
    when a *retry* finds a manifest already there, it is read back: byte for byte
    ours means the earlier attempt won, and the write succeeded; anything else is
    somebody else's manifest and CheckpointExists is raised as usual.

    Raises:
        CheckpointExists: another manifest is at that place.
        StorageError: a permanent failure, or a transient one that outlived the retries.
    """
    retried = False
    for attempt in range(1, ATTEMPTS + 1):
        try:
            store.write_manifest(target, name, data)
            return
        except CheckpointExists:
            if retried and call(store.read_manifest, target, name) == data:
                return
            raise
        except StorageError as exc:
            if not exc.transient or attempt == ATTEMPTS:
                raise
            retried = True
            time.sleep(BACKOFF_S * 2 ** (attempt - 1))
    raise AssertionError("unreachable")  # pragma: no cover
