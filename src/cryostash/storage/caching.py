"""``CachingBackend``: a store's chunk objects read through the local chunk cache.

A wrapper presenting the :class:`~cryostash.storage.backend.Backend` protocol over a
remote backend and a :class:`~cryostash.storage.cache.ChunkCache` (``--cache DIR``):

- :meth:`CachingBackend.get` of a chunk object (``blobs/<h[0:2]>/<h>``) answers from the
  cache when it holds the object (a hit touches the entry: evicted last), else from the
  inner backend; :meth:`CachingBackend.lookup` also says which. Nothing read from the
  inner backend is cached by ``get``: cache entries are untrusted, and the
  :class:`~cryostash.storage.store.Store` adds an object (:meth:`fill`) only once it has
  verified it, and :meth:`evict`-s one that fails verification.
- Writes go to the inner backend (the Store also :meth:`fill`-s the cache with a chunk
  it writes: a create on this host then restores here without downloading).
- Every other call passes through. :meth:`trim` bounds the cache (transfers call it once
  at the end).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from cryostash.storage import layout
from cryostash.storage.backend import Backend, Buffer, ObjectInfo, WriteBatch
from cryostash.storage.cache import ChunkCache


def _digest(key: str) -> str | None:
    """The digest of a chunk object's key, else None."""
    return layout.parse_blob_path("", key)


class CachingBackend:
    """``inner`` with chunk objects read through ``cache`` (see the module docstring)."""

    def __init__(self, inner: Backend, cache: ChunkCache) -> None:
        self.inner = inner
        self.cache = cache
        self.url = inner.url
        self.remote = inner.remote
        self.atomic_create = inner.atomic_create

    def __repr__(self) -> str:
        return f"CachingBackend({self.inner!r}, {self.cache!r})"

    def lookup(self, key: str) -> tuple[bytes, bool]:
        """The object at ``key`` and whether the cache served it."""
        digest = _digest(key)
        if digest is not None:
            data = self.cache.get(digest)
            if data is not None:
                return data, True
        return self.inner.get(key), False

    def get(self, key: str) -> bytes:
        return self.lookup(key)[0]

    def cached_size(self, key: str) -> int | None:
        """The size of the cache entry of chunk ``key``, touched as recently used; None if
        absent (or not a chunk)."""
        digest = _digest(key)
        return None if digest is None else self.cache.touch(digest)

    def is_cached(self, key: str) -> bool:
        """True if the cache holds chunk ``key`` (no promise that it is intact)."""
        digest = _digest(key)
        return digest is not None and self.cache.has(digest)

    def fill(self, key: str, parts: Sequence[Buffer]) -> bool:
        """Cache the verified chunk object ``parts`` of ``key``; True if it was written."""
        digest = _digest(key)
        return digest is not None and self.cache.put(digest, parts)

    def evict(self, key: str) -> None:
        """Drop the cache entry of ``key`` (found corrupt)."""
        digest = _digest(key)
        if digest is not None:
            self.cache.discard(digest)

    def trim(self) -> int:
        """Evict least recently used entries down to the cache's bound; bytes evicted."""
        return self.cache.trim()

    def put(self, key: str, parts: Sequence[Buffer]) -> bool:
        return self.inner.put(key, parts)

    def create(self, key: str, data: bytes) -> None:
        self.inner.create(key, data)

    def exists(self, key: str) -> bool:
        return self.inner.exists(key)

    def stat(self, key: str) -> ObjectInfo:
        return self.inner.stat(key)

    def delete(self, key: str) -> None:
        self.inner.delete(key)

    def delete_prefix(self, prefix: str) -> None:
        self.inner.delete_prefix(prefix)

    def scan(self, prefix: str) -> list[ObjectInfo]:
        return self.inner.scan(prefix)

    def top(self) -> list[ObjectInfo]:
        return self.inner.top()

    def has_any(self, prefix: str) -> bool:
        return self.inner.has_any(prefix)

    def batch(self, jobs: int) -> WriteBatch:
        return self.inner.batch(jobs)

    def root_exists(self) -> bool:
        return self.inner.root_exists()

    def check_writable(self) -> None:
        self.inner.check_writable()

    def tidy(self, prefix: str, *, older_than: float, keep: Iterable[str] = ()) -> int:
        return self.inner.tidy(prefix, older_than=older_than, keep=keep)
