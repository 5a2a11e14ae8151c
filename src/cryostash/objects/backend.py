"""``Backend``: the object-store protocol every byte of a store goes through.

A backend holds objects under typed keys (:class:`~cryostash.objects.key.Key`: a kind and
a ``/``-separated path relative to the store root, ``checkpoints/web/nightly/manifest.json``,
``blobs/ab/ab12...``); folder-wide calls (:meth:`Backend.scan`, :meth:`Backend.delete_prefix`,
...) take a prefix. It knows nothing of manifests, chunks, SQL or CRIU: the checkpoint
format (:mod:`cryostash.store`) renders the keys and builds the repository on top.
Implementations: :class:`~cryostash.objects.local.LocalBackend` (the local disk: temporary
sibling, fsync, rename or link) and :class:`~cryostash.objects.fsspec_backend.FsspecBackend`
(any fsspec file system: S3, memory, chained URLs...). Wrappers extend
:class:`~cryostash.objects.forwarding.ForwardingBackend` and present the same protocol:
:class:`~cryostash.objects.retrying.RetryingBackend` (transient failures retried) and
:class:`~cryostash.objects.caching.CachingBackend` (chunks read through the local chunk
cache). :func:`cryostash.objects.location.open_backend` makes one from a URL.

Errors: a backend raises the sentinels of :mod:`cryostash.objects.errors` at its boundary
(the library's exception as their cause): ``NotFound`` for a missing key,
``AlreadyExists`` when :meth:`Backend.create` finds the key taken, ``Transient`` for what
a retry may cure, ``Permanent`` (``PermissionDenied``) for the rest; bugs (TypeError...)
pass as they are. The format turns sentinels into cryostash errors
(:mod:`cryostash.store.translate`). Thread safety: every method may be called from
several threads at once.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Protocol

from cryostash.objects.key import Key

#: Bytes-like objects a write accepts (the codec's output: a header and a payload view).
Buffer = bytes | bytearray | memoryview


@dataclass(frozen=True)
class ObjectInfo:
    """One stored object.

    Attributes:
        key: its path, relative to the store root, ``/``-separated.
        size: size in bytes.
        modified: last modification (or creation) time in UTC, None if the backend
            reports none.
    """

    key: str
    size: int
    modified: datetime | None


class WriteBatch(Protocol):
    """Writes that become durable, and visible, together (one barrier per batch).

    :meth:`add` stores an object; on backends where a write is not durable until synced
    (the local disk) it is invisible until :meth:`commit`, which syncs every object and
    then makes each visible. A caller that writes a manifest after :meth:`commit` returned
    never names an object a crash could lose. :meth:`discard` drops what was not
    committed. Thread-safe.
    """

    def add(self, key: Key, parts: Sequence[Buffer]) -> bool:
        """Write the object ``parts`` (concatenated) at ``key``; False when the backend
        can tell that ``key`` already exists (nothing written), else True."""
        ...

    def commit(self) -> None:
        """Make every added object durable, then visible."""
        ...

    def discard(self) -> None:
        """Remove every added object not committed (best effort)."""
        ...


class Backend(Protocol):
    """An object store rooted somewhere (see the module docstring).

    Attributes:
        url: the canonical, credential-free root URL (safe to show; the catalog's key).
        remote: requests cross a network: a local chunk cache and more parallel requests
            pay off (False for the local disk and ``memory://``).
        atomic_create: :meth:`create` is create-only even against writers on other
            hosts (local disk: ``link``; S3: ``If-None-Match: *``; memory: a lock).
    """

    @property
    def url(self) -> str: ...

    @property
    def remote(self) -> bool: ...

    @property
    def atomic_create(self) -> bool: ...

    def get(self, key: Key) -> bytes:
        """The whole object at ``key`` (NotFound if missing)."""
        ...

    def put(self, key: Key, parts: Sequence[Buffer]) -> bool:
        """Store ``parts`` (concatenated) at ``key``, atomically and durably (readers see
        the old object or the whole new one). Returns False when the backend can tell
        that ``key`` already existed and skipped the write (content-addressed objects:
        same key, same bytes), else True."""
        ...

    def create(self, key: Key, data: bytes) -> None:
        """Store ``data`` at ``key`` only if nothing is there: atomic and create-only
        (AlreadyExists when it is taken; the object is left intact)."""
        ...

    def exists(self, key: Key) -> bool:
        """True if an object is at ``key`` (fresh: no cached listing is trusted)."""
        ...

    def stat(self, key: Key) -> ObjectInfo:
        """Size and modification time of ``key`` (NotFound if missing)."""
        ...

    def delete(self, key: Key) -> None:
        """Remove the object at ``key``; idempotent (missing is fine)."""
        ...

    def delete_prefix(self, prefix: str) -> None:
        """Remove every object under the folder ``prefix``; idempotent."""
        ...

    def scan(self, prefix: str) -> list[ObjectInfo]:
        """Every object under the folder ``prefix`` (recursively; empty if none), fresh."""
        ...

    def top(self) -> list[ObjectInfo]:
        """The objects directly under the root (not in a folder), fresh."""
        ...

    def has_any(self, prefix: str) -> bool:
        """True if the folder ``prefix`` may hold an object (one cheap listing; any doubt
        says True)."""
        ...

    def batch(self, jobs: int) -> WriteBatch:
        """A :class:`WriteBatch` whose commit syncs on ``jobs`` threads."""
        ...

    def root_exists(self) -> bool:
        """True if the root exists (a new local store has none until its first write)."""
        ...

    def check_writable(self) -> None:
        """Create and delete a small probe object under the root (making a missing local
        root); raises a sentinel error when that fails."""
        ...

    def tidy(self, prefix: str, *, older_than: float, keep: Iterable[str] = ()) -> int:
        """Remove empty folders under ``prefix`` last modified at or before the POSIX time
        ``older_than``, except the folders ``keep`` (keys) and their parents; returns how
        many. Object stores have no folders: 0."""
        ...
