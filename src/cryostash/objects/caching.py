"""``CachingBackend``: a store's chunk objects read through the local chunk cache.

A :class:`~cryostash.objects.forwarding.ForwardingBackend` over a remote backend and a
:class:`~cryostash.objects.cache.ChunkCache` (``--cache DIR``). It decides by the key's
kind (:attr:`~cryostash.objects.key.Kind.CHUNK`), never by parsing a path:

- :meth:`CachingBackend.get` of a chunk answers from the cache when it holds the object
  (a hit touches the entry: evicted last), else from the inner backend;
  :meth:`CachingBackend.lookup` also says which. Nothing read from the inner backend is
  cached by ``get``: cache entries are untrusted, and the checkpoint format adds an object
  (:meth:`fill`) only once it has verified it, and :meth:`evict`-s one that fails
  verification.
- :meth:`CachingBackend.delete` of a chunk also evicts its cache entry: a deleted chunk
  is never served from the cache afterwards.
- Every other call, and every other kind, passes through. :meth:`trim` bounds the cache
  (transfers call it once at the end).
"""

from __future__ import annotations

from collections.abc import Sequence

from cryostash.objects.backend import Backend, Buffer
from cryostash.objects.cache import ChunkCache
from cryostash.objects.forwarding import ForwardingBackend
from cryostash.objects.key import Key, Kind


class CachingBackend(ForwardingBackend):
    """``inner`` with chunk objects read through ``cache`` (see the module docstring)."""

    def __init__(self, inner: Backend, cache: ChunkCache) -> None:
        super().__init__(inner)
        self.cache = cache

    def __repr__(self) -> str:
        return f"CachingBackend({self.inner!r}, {self.cache!r})"

    def lookup(self, key: Key) -> tuple[bytes, bool]:
        """The object at ``key`` and whether the cache served it."""
        if key.kind is Kind.CHUNK:
            data = self.cache.get(key.name)
            if data is not None:
                return data, True
        return self.inner.get(key), False

    def get(self, key: Key) -> bytes:
        return self.lookup(key)[0]

    def delete(self, key: Key) -> None:
        self.inner.delete(key)
        self.evict(key)

    def cached_size(self, key: Key) -> int | None:
        """The size of the cache entry of chunk ``key``, touched as recently used; None if
        absent (or not a chunk)."""
        return self.cache.touch(key.name) if key.kind is Kind.CHUNK else None

    def is_cached(self, key: Key) -> bool:
        """True if the cache holds chunk ``key`` (no promise that it is intact)."""
        return key.kind is Kind.CHUNK and self.cache.has(key.name)

    def fill(self, key: Key, parts: Sequence[Buffer]) -> bool:
        """Cache the verified chunk object ``parts`` of ``key``; True if it was written
        (never for another kind)."""
        return key.kind is Kind.CHUNK and self.cache.put(key.name, parts)

    def evict(self, key: Key) -> None:
        """Drop the cache entry of chunk ``key`` (deleted, or found corrupt)."""
        if key.kind is Kind.CHUNK:
            self.cache.discard(key.name)

    def trim(self) -> int:
        """Evict least recently used entries down to the cache's bound; bytes evicted."""
        return self.cache.trim()
