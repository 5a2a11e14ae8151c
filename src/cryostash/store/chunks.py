"""``Chunks``: the content-addressed chunk area of a checkpoint store (``blobs/``).

A chunk is stored once under its name (``blobs/<h[0:2]>/<h>``, a key of kind
:attr:`~cryostash.objects.key.Kind.CHUNK`), encoded (:mod:`~cryostash.store.codec`) and,
in an encrypted store, sealed (:mod:`~cryostash.store.sealing`). :class:`Chunks` writes
them in batches (:class:`ChunkBatch`: one durability barrier per create), reads them back
decoded and verified (through the chunk cache when the store reads through one), and
deletes them (the cache entry goes too). Errors are cryostash errors
(:mod:`~cryostash.store.translate`): a missing chunk is
:class:`~cryostash.errors.ObjectNotFound`. Thread-safe.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass

from cryostash.errors import CryostashError, IntegrityError, ObjectNotFound
from cryostash.objects.backend import Backend, Buffer, WriteBatch
from cryostash.objects.caching import CachingBackend
from cryostash.store import codec, layout
from cryostash.store.sealing import Sealing, is_sealed
from cryostash.store.translate import translating


@dataclass(frozen=True)
class FetchedChunk:
    """A chunk read back: its verified plain bytes, the size of its stored (encoded)
    object, whether the local cache served it, and whether it was added to the cache."""

    plain: bytes | memoryview
    stored_size: int
    from_cache: bool
    cached: bool


class Chunks:
    """The chunks of the store at ``url`` through ``backend`` (``cache``: the same backend
    when it reads through the chunk cache, else None); ``sealing`` gives the store's
    sealing (opening its key on first use)."""

    def __init__(
        self,
        backend: Backend,
        url: str,
        sealing: Callable[[], Sealing],
        cache: CachingBackend | None = None,
    ) -> None:
        self._backend = backend
        self._url = url
        self._sealing = sealing
        self._cache = cache

    def _guard(
        self, op: str, digest: str, missing: bool = False
    ) -> AbstractContextManager[None]:
        url = self._url

        def not_found() -> CryostashError:
            return ObjectNotFound(f"blob {digest} does not exist in store {url}")

        return translating(op, f"blob {digest}", url=url, not_found=not_found if missing else None)

    def encode(self, digest: str, plain: Buffer, level: int | None) -> Sequence[Buffer]:
        """The stored object of chunk ``digest`` (plain bytes ``plain``): encoded (zstd at
        ``level``, or raw), then sealed when the store is encrypted; write its parts in
        order (:meth:`ChunkBatch.add`, :meth:`cache_object`)."""
        key = layout.chunk_key(digest)
        return self._sealing().seal(key.path, codec.encode(plain, level))

    def has(self, digest: str) -> bool:
        """True if the chunk object ``digest`` is stored (fresh check)."""
        with self._guard("check", digest):
            return self._backend.exists(layout.chunk_key(digest))

    def holds_none(self) -> bool:
        """True if the store certainly holds no chunk (one listing): then no chunk needs
        to be looked for. Any doubt (an error) says False."""
        try:
            return not self._backend.has_any(layout.BLOBS)
        except Exception:
            return False

    def batch(self, jobs: int = 4) -> ChunkBatch:
        """A batch of chunk writes made durable, then visible, together (see
        :class:`ChunkBatch`)."""
        return ChunkBatch(self, self._backend.batch(jobs), self._backend.remote)

    def read_object(self, digest: str) -> bytes:
        """The stored (encoded, unverified) object of chunk ``digest``.

        Raises:
            ObjectNotFound: ``blob DIGEST does not exist in store URL``.
            StorageError: the read failed.
        """
        with self._guard("read", digest, missing=True):
            return self._backend.get(layout.chunk_key(digest))

    def fetch(self, digest: str, size: int | None, *, what: str) -> FetchedChunk:
        """Chunk ``digest`` decoded and verified (BLAKE3 and, when given, its plain
        ``size``) before a byte of it is returned: from the cache when the store reads
        through one and it holds the chunk (a bad entry is evicted and the chunk read from
        the store), else from the store (then added to the cache).

        Raises:
            ObjectNotFound: missing. IntegrityError: ``WHAT is corrupt: ...``.
            StorageError: the read failed.
        """
        key = layout.chunk_key(digest)
        cache = self._cache
        sealing = self._sealing()
        if cache is None:
            data = self.read_object(digest)
        else:
            with self._guard("read", digest, missing=True):
                data, hit = cache.lookup(key)
            if hit:
                try:
                    plain = sealing.verified(key.path, data, digest, size, what)
                    return FetchedChunk(plain, len(data), True, False)
                except IntegrityError:
                    cache.evict(key)
                    data = self.read_object(digest)
        plain = sealing.verified(key.path, data, digest, size, what)
        cached = cache is not None and cache.fill(key, (data,))
        return FetchedChunk(plain, len(data), False, cached)

    def read(self, digest: str, size: int | None = None) -> bytes:
        """The plain bytes of chunk ``digest``, decoded and verified.

        Raises:
            ObjectNotFound: missing. IntegrityError: corrupt. StorageError: read failed.
        """
        data, key = self.read_object(digest), layout.chunk_key(digest)
        return bytes(self._sealing().verified(key.path, data, digest, size, None))

    def cached_size(self, digest: str) -> int | None:
        """The size of the cache entry of ``digest`` (touched: evicted last), or None when
        it is not cached or the store reads through no cache."""
        cache = self._cache
        return None if cache is None else cache.cached_size(layout.chunk_key(digest))

    def is_cached(self, digest: str) -> bool:
        """True if the store's cache holds ``digest`` (no promise that it is intact)."""
        return self._cache is not None and self._cache.is_cached(layout.chunk_key(digest))

    def cache_object(self, digest: str, parts: Sequence[Buffer]) -> bool:
        """Add the encoded object of ``digest`` to the store's cache (the caller vouches
        for it); True if it was written."""
        return self._cache is not None and self._cache.fill(layout.chunk_key(digest), parts)

    def trim_cache(self) -> None:
        """Bound the store's cache (once, at the end of a transfer)."""
        if self._cache is not None:
            self._cache.trim()

    def delete(self, digest: str) -> None:
        """Remove chunk object ``digest`` (and its cache entry). Idempotent: a missing
        one is not an error. Only the caller knows whether a chunk is still referenced;
        nothing here checks."""
        with self._guard("delete", digest):
            self._backend.delete(layout.chunk_key(digest))


class ChunkBatch:
    """Chunk writes made durable, then visible, together (one barrier per create).

    :meth:`add` stores one encoded chunk (on the local disk: a temporary file whose
    write-out starts at once; elsewhere one PUT, visible at once); :meth:`commit` is the
    barrier (local: every temporary file ``fdatasync``-ed, renamed into place, folders
    fsynced), after which a manifest may name them; :meth:`discard` removes what was not
    committed (a failed create). Thread-safe.
    """

    def __init__(self, chunks: Chunks, batch: WriteBatch, remote: bool) -> None:
        self._chunks = chunks
        self._sealed = chunks._sealing().encrypted
        self._batch = batch
        self._count = 0
        # Asking first pays where a write costs a request and the store may have the
        # chunk; on the local disk the write itself checks, and a store that held no
        # chunk when the batch began needs no asking.
        self._ask = remote and not chunks.holds_none()

    def present(self, digest: str) -> bool:
        """True if the store already holds chunk ``digest``, where asking is cheaper than
        writing (see above; False otherwise: :meth:`add` then tells).

        Raises:
            StorageError: the check failed (after retries).
        """
        return self._ask and self._chunks.has(digest)

    def add(self, digest: str, parts: Sequence[Buffer]) -> bool:
        """Store the encoded chunk ``parts`` (concatenated) as ``digest``; the caller
        vouches that they encode content whose BLAKE3 is ``digest``. False when the
        store already had it (nothing written).

        Raises:
            StorageError: the write failed (after retries); nothing under its name.
            IntegrityError: a plain object given to an encrypted store (nothing written).
        """
        if self._sealed and not (len(parts) == 1 and is_sealed(parts[0])):
            url = self._chunks._url
            raise IntegrityError(f"refusing to write blob {digest} in the clear into {url}")
        with self._chunks._guard("upload", digest):
            wrote = self._batch.add(layout.chunk_key(digest), parts)
        self._count += int(wrote)
        return wrote

    def commit(self) -> None:
        """Make every chunk added durable, then visible.

        Raises:
            StorageError: a sync or rename failed (temporary files are removed).
        """
        with translating("write", f"{self._count} new blobs", url=self._chunks._url):
            self._batch.commit()

    def discard(self) -> None:
        """Remove every chunk added and not committed (best effort)."""
        self._batch.discard()
