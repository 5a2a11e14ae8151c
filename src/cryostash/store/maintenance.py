"""``Maintenance``: what ``gc``, ``verify`` and ``catalog rebuild`` ask of a checkpoint
store as a whole: its inventory (every object, sorted by
:mod:`~cryostash.store.inventory`), removing strays, tidying empty folders. Errors are
cryostash errors (:mod:`~cryostash.store.translate`). Thread-safe.
"""

from __future__ import annotations

from collections.abc import Iterable

from cryostash.objects.backend import Backend
from cryostash.objects.errors import BackendError
from cryostash.objects.key import other
from cryostash.store import layout
from cryostash.store.inventory import Inventory, classify, stray_key
from cryostash.store.translate import translating


class Maintenance:
    """The whole-store operations of the store at ``url`` through ``backend``."""

    def __init__(self, backend: Backend, url: str) -> None:
        self._backend = backend
        self._url = url

    def inventory(self) -> Inventory:
        """Every object under ``checkpoints/`` and ``blobs/`` (and probe files at the root),
        sorted into manifests, chunks and strays (:mod:`cryostash.store.inventory`).

        Raises:
            StorageError: the listing failed.
        """
        with translating("list", "objects", url=self._url):
            listed = [
                *self._backend.scan(layout.CHECKPOINTS),
                *self._backend.scan(layout.BLOBS),
            ]
            return classify(listed, self._backend.top())

    def delete_stray(self, path: str) -> None:
        """Remove the stray object at ``path`` (relative to the root); missing is fine.

        Raises:
            UsageError: ``path`` is not a stray of this layout. StorageError: it failed.
        """
        key = other(stray_key(path))
        with translating("delete", path, url=self._url):
            self._backend.delete(key)

    def tidy(self, *, older_than: float, keep: Iterable[tuple[str, str]] = ()) -> int:
        """Remove empty folders under ``checkpoints/`` last modified at or before the POSIX
        time ``older_than``, except those of the checkpoints ``keep`` (being created) and
        of their targets; returns how many (0 on object stores). Best effort."""
        kept = [layout.checkpoint_prefix(t, n) for t, n in keep]
        try:
            return self._backend.tidy(layout.CHECKPOINTS, older_than=older_than, keep=kept)
        except BackendError:
            return 0
