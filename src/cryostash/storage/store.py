"""``Store``: the repository of checkpoints over one :class:`~cryostash.storage.backend.Backend`.

Layout under the root (see :mod:`cryostash.storage.layout`)::

    checkpoints/<target>/<name>/manifest.json   written last, create-only: the commit marker
    blobs/<h[0:2]>/<h>                          one chunk: codec tag + zstd frame (or raw)

The Store speaks in manifests and chunks: it writes, reads and checks manifests (the one
loader, :meth:`Store.load_manifest`, also checks the catalog's digest), encodes nothing
but stores encoded chunks and reads them back decoded and verified, takes the inventory
gc, verify and rebuild work from. Every byte goes through its backend: the local disk or
fsspec (chosen from the URL), wrapped by the retrying backend (the one place where calls
are retried) and, for a transfer that uses the chunk cache, the caching one. It knows
nothing of SQL or CRIU. Ordering is the caller's job: write every chunk a manifest names
*before* the manifest; a checkpoint counts only once its manifest exists.

Errors: every backend exception is translated in one place
(:mod:`cryostash.storage.translate`); callers only see cryostash errors. A missing chunk
object is :class:`~cryostash.errors.ObjectNotFound`, a missing manifest
:class:`~cryostash.errors.CheckpointNotFound`. Thread safety: a Store holds no mutable
state of its own but the retry counters; every method may be called from several threads.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass
from typing import Any

from cryostash.config.secrets import PassphraseSource
from cryostash.errors import (
    CheckpointExists,
    CheckpointNotFound,
    CryostashError,
    IntegrityError,
    ObjectNotFound,
    StorageError,
)
from cryostash.storage import codec, layout
from cryostash.storage.backend import Backend, Buffer, WriteBatch
from cryostash.storage.cache import ChunkCache
from cryostash.storage.caching import CachingBackend
from cryostash.storage.inventory import Inventory, classify, stray_key
from cryostash.storage.keys import Keyring, KeyState
from cryostash.storage.manifest import StoredManifest, load_manifest
from cryostash.storage.retrying import RetryingBackend, RetryPolicy
from cryostash.storage.sealing import Sealing, is_sealed
from cryostash.storage.translate import is_transient, store_problem, translating


@dataclass(frozen=True)
class FetchedChunk:
    """A chunk read back: its verified plain bytes, the size of its stored (encoded)
    object, whether the local cache served it, and whether it was added to the cache."""

    plain: bytes | memoryview
    stored_size: int
    from_cache: bool
    cached: bool


class Store:
    """A checkpoint store rooted at ``url`` (a local path or any fsspec URL).

    Args:
        url: root of the store: ``/srv/store``, ``file:///srv/store``,
            ``s3://bucket/prefix``, ``memory://name``... A local root that does not
            exist is created on first write.
        storage_options: passed to fsspec (``key``, ``secret``, ``endpoint_url``...);
            never shown, never persisted.
        retry: how transient failures are retried (default: 3 attempts, from 0.25 s).
        passphrase, expect_encrypted: an encrypted store's passphrase source; refuse a
            plain store (:class:`~.keys.KeyState`; keys open on first use or :meth:`unlock`).

    Attributes:
        url: canonical root URL without credentials (a local root is an absolute
            path): safe to show and to use as the catalog's store key.
        remote: requests cross a network (every fsspec store): a chunk cache and more
            parallel transfers pay off.
        supports_atomic_create: :meth:`write_manifest` is create-only even against
            writers on other hosts. False means exists-then-write.

    Raises:
        UsageError: unknown protocol, malformed URL, missing backend package, or a local
            root that is a file (``PATH exists and is not a directory``).
    """

    def __init__(
        self,
        url: str,
        storage_options: Mapping[str, Any] | None = None,
        *,
        retry: RetryPolicy | None = None,
        passphrase: PassphraseSource | None = None,
        expect_encrypted: bool = False,
    ) -> None:
        from cryostash.storage.location import open_backend

        retrying = RetryingBackend(open_backend(url, storage_options), retry)
        self._setup(retrying, retrying, KeyState(passphrase, expect_encrypted))

    @classmethod
    def over(
        cls,
        backend: Backend,
        retry: RetryPolicy | None = None,
        *,
        passphrase: PassphraseSource | None = None,
    ) -> Store:
        """A Store over ``backend`` (wrapped by the retrying backend): for tests and tools
        that bring their own backend (a fault-injecting one, say)."""
        store = cls.__new__(cls)
        retrying = RetryingBackend(backend, retry)
        store._setup(retrying, retrying, KeyState(passphrase, False))
        return store

    def _setup(self, backend: Backend, retrying: RetryingBackend, keys: KeyState) -> None:
        self._backend = backend
        self._retrying = retrying
        self._keys = keys
        self._cache = backend if isinstance(backend, CachingBackend) else None
        self.url: str = backend.url
        self.remote: bool = backend.remote
        self.supports_atomic_create: bool = backend.atomic_create

    def __repr__(self) -> str:
        return f"Store({self.url!r})"

    @property
    def backend(self) -> Backend:
        """The backend every call goes through (wrappers included)."""
        return self._backend

    @property
    def retries(self) -> int:
        """Calls retried so far (all threads): transfers report the difference."""
        return self._retrying.retries

    @property
    def bytes_failed(self) -> int:
        """Bytes of writes that failed so far (retried or not)."""
        return self._retrying.bytes_failed

    def with_cache(self, cache: ChunkCache) -> Store:
        """This store with chunk objects read through ``cache`` (a
        :class:`~cryostash.storage.caching.CachingBackend`); same retry counters."""
        store = Store.__new__(Store)
        store._setup(CachingBackend(self._backend, cache), self._retrying, self._keys)
        return store

    @property
    def keyring(self) -> Keyring:
        """The configuration and key objects of this store (``store init``, ``key ...``)."""
        return Keyring(self._retrying, self.url)

    @property
    def keys(self) -> KeyState:
        """This store's key state (``keys.unlocked``: the opened key, once unlocked)."""
        return self._keys

    @property
    def sealing(self) -> Sealing:
        """How this store names (``chunk_name``, ``zero_name``, ``manifest_digest``) and
        seals its objects: plain, or keyed once unlocked. Raises as :meth:`unlock`."""
        return self._keys.sealing(self.keyring)

    def unlock(self, *, restore: bool = False) -> bool:
        """Open the key now (``restore``: to read checkpoints); True if encrypted. Raises
        KeyRequired, WrongKey, RestoreKeyRequired (:meth:`~.keys.KeyState.sealing`)."""
        return self._keys.sealing(self.keyring, restore=restore).encrypted

    def encode_chunk(self, digest: str, plain: Buffer, level: int | None) -> Sequence[Buffer]:
        """The stored object of chunk ``digest`` (plain bytes ``plain``): encoded (zstd at
        ``level``, or raw), then sealed when the store is encrypted; write its parts in
        order (:meth:`ChunkBatch.add`, :meth:`cache_object`)."""
        return self.sealing.seal(self._blob_key(digest), codec.encode(plain, level))

    # -- helpers ------------------------------------------------------------------

    def _guard(
        self,
        op: str,
        where: str,
        *,
        not_found: Callable[[], CryostashError] | None = None,
        exists: Callable[[], CryostashError] | None = None,
    ) -> AbstractContextManager[None]:
        return translating(op, where, url=self.url, not_found=not_found, exists=exists)

    @staticmethod
    def _exists_error(target: str, name: str) -> Callable[[], CryostashError]:
        return lambda: CheckpointExists(
            f"checkpoint with name {name} already exists for container {target}"
        )

    @staticmethod
    def _missing_error(target: str, name: str) -> Callable[[], CryostashError]:
        return lambda: CheckpointNotFound(
            f"checkpoint {name} does not exist for container {target}"
        )

    def _missing_blob(self, digest: str) -> Callable[[], CryostashError]:
        return lambda: ObjectNotFound(f"blob {digest} does not exist in store {self.url}")

    # -- manifests ----------------------------------------------------------------------

    def manifest_exists(self, target: str, name: str) -> bool:
        """True if ``target``/``name`` has a manifest (is committed in the store)."""
        key = layout.manifest_path("", target, name).lstrip("/")
        with self._guard("check", f"manifest of {target}/{name}"):
            return self._backend.exists(key)

    def write_manifest(self, target: str, name: str, data: bytes) -> None:
        """Write the manifest of ``target``/``name``: create-only and atomic.

        This is the commit marker: call it after every chunk the manifest names is
        stored. Atomic: readers see no manifest or all of ``data``. Create-only: if a
        manifest exists (whoever wrote it), it is left intact and CheckpointExists is
        raised; with ``supports_atomic_create`` this holds against concurrent writers
        on other hosts too.

        Raises:
            CheckpointExists: ``checkpoint with name NAME already exists for container TARGET``.
            StorageError: the write failed; no manifest was written.
        """
        key = layout.manifest_path("", target, name).lstrip("/")
        sealed = self.sealing.seal(key, (data,))
        with self._guard(
            "write", f"manifest of {target}/{name}", exists=self._exists_error(target, name)
        ):
            self._backend.create(key, b"".join(sealed))

    def read_manifest(self, target: str, name: str) -> bytes:
        """The (plain: opened, when the store is encrypted) bytes of the manifest of
        ``target``/``name``.

        Raises:
            CheckpointNotFound: ``checkpoint NAME does not exist for container TARGET``.
            StorageError: the read failed. IntegrityError: sealed and not authentic.
        """
        key = layout.manifest_path("", target, name).lstrip("/")
        sealing = self.sealing
        with self._guard(
            "read", f"manifest of {target}/{name}", not_found=self._missing_error(target, name)
        ):
            data = self._backend.get(key)
        return bytes(sealing.open(key, data, what=f"manifest of {target}/{name}"))

    def load_manifest(
        self, target: str, name: str, expected: str | None = None
    ) -> StoredManifest:
        """The manifest of ``target``/``name``, parsed and checked against the digest the
        catalog recorded (``expected``; None: not checked). The one manifest loader.

        Raises:
            CheckpointNotFound: no manifest. StorageError: the read failed.
            IntegrityError: not a valid manifest of this checkpoint.
            ManifestMismatch: valid but not the one the catalog recorded.
        """
        data = self.read_manifest(target, name)
        digest_of = self.sealing.manifest_digest
        return load_manifest(data, target=target, name=name, expected=expected, digest_of=digest_of)

    def delete_manifest(self, target: str, name: str) -> None:
        """Remove the folder of ``target``/``name`` (manifest first, so a crash midway
        leaves it uncommitted). Idempotent: a missing checkpoint is not an error.
        Chunks are not touched (gc or the manager decides which to delete)."""
        folder = layout.checkpoint_dir("", target, name).lstrip("/")
        with self._guard("delete", f"checkpoint {target}/{name}"):
            self._backend.delete(f"{folder}/{layout.MANIFEST}")
            self._backend.delete_prefix(folder)

    # -- chunks -------------------------------------------------------------------------

    @staticmethod
    def _blob_key(digest: str) -> str:
        return layout.blob_path("", digest).lstrip("/")

    def has_blob(self, digest: str) -> bool:
        """True if the chunk object ``digest`` is stored (fresh check)."""
        with self._guard("check", f"blob {digest}"):
            return self._backend.exists(self._blob_key(digest))

    def holds_no_blob(self) -> bool:
        """True if the store certainly holds no chunk (one listing): then no chunk needs
        to be looked for. Any doubt (an error) says False."""
        try:
            return not self._backend.has_any(layout.BLOBS)
        except Exception:
            return False

    def write_batch(self, jobs: int = 4) -> ChunkBatch:
        """A batch of chunk writes made durable, then visible, together (see
        :class:`ChunkBatch`)."""
        return ChunkBatch(self, self._backend.batch(jobs))

    def read_object(self, digest: str) -> bytes:
        """The stored (encoded, unverified) object of chunk ``digest``.

        Raises:
            ObjectNotFound: ``blob DIGEST does not exist in store URL``.
            StorageError: the read failed.
        """
        with self._guard("read", f"blob {digest}", not_found=self._missing_blob(digest)):
            return self._backend.get(self._blob_key(digest))

    def fetch_chunk(self, digest: str, size: int | None, *, what: str) -> FetchedChunk:
        """Chunk ``digest`` decoded and verified (BLAKE3 and, when given, its plain
        ``size``) before a byte of it is returned: from the cache when this store reads
        through one and it holds the chunk (a bad entry is evicted and the chunk read from
        the store), else from the store (then added to the cache).

        Raises:
            ObjectNotFound: missing. IntegrityError: ``WHAT is corrupt: ...``.
            StorageError: the read failed.
        """
        key = self._blob_key(digest)
        cache = self._cache
        sealing = self.sealing
        if cache is None:
            data = self.read_object(digest)
        else:
            with self._guard("read", f"blob {digest}", not_found=self._missing_blob(digest)):
                data, hit = cache.lookup(key)
            if hit:
                try:
                    plain = sealing.verified(self._blob_key(digest), data, digest, size, what)
                    return FetchedChunk(plain, len(data), True, False)
                except IntegrityError:
                    cache.evict(key)
                    data = self.read_object(digest)
        plain = sealing.verified(key, data, digest, size, what)
        cached = cache is not None and cache.fill(key, (data,))
        return FetchedChunk(plain, len(data), False, cached)

    def read_chunk(self, digest: str, size: int | None = None) -> bytes:
        """The plain bytes of chunk ``digest``, decoded and verified.

        Raises:
            ObjectNotFound: missing. IntegrityError: corrupt. StorageError: read failed.
        """
        data, key = self.read_object(digest), self._blob_key(digest)
        return bytes(self.sealing.verified(key, data, digest, size, None))

    def cached_size(self, digest: str) -> int | None:
        """The size of the cache entry of ``digest`` (touched: evicted last), or None when
        it is not cached or this store reads through no cache."""
        return None if self._cache is None else self._cache.cached_size(self._blob_key(digest))

    def is_cached(self, digest: str) -> bool:
        """True if this store's cache holds ``digest`` (no promise that it is intact)."""
        return self._cache is not None and self._cache.is_cached(self._blob_key(digest))

    def cache_object(self, digest: str, parts: Sequence[Buffer]) -> bool:
        """Add the encoded object of ``digest`` to this store's cache (the caller vouches
        for it); True if it was written."""
        return self._cache is not None and self._cache.fill(self._blob_key(digest), parts)

    def trim_cache(self) -> None:
        """Bound this store's cache (once, at the end of a transfer)."""
        if self._cache is not None:
            self._cache.trim()

    def delete_blob(self, digest: str) -> None:
        """Remove chunk object ``digest``. Idempotent: a missing one is not an error.

        Only the caller knows whether a chunk is still referenced; the store does not check.
        """
        with self._guard("delete", f"blob {digest}"):
            self._backend.delete(self._blob_key(digest))

    # -- inventory (gc, verify, rebuild) --------------------------------------------------

    def inventory(self) -> Inventory:
        """Every object under ``checkpoints/`` and ``blobs/`` (and probe files at the root),
        sorted into manifests, chunks and strays (:mod:`cryostash.storage.inventory`).

        Raises:
            StorageError: the listing failed.
        """
        with self._guard("list", "objects"):
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
        key = stray_key(path)
        with self._guard("delete", path):
            self._backend.delete(key)

    def tidy(self, *, older_than: float, keep: Iterable[tuple[str, str]] = ()) -> int:
        """Remove empty folders under ``checkpoints/`` last modified at or before the POSIX
        time ``older_than``, except those of the checkpoints ``keep`` (being created) and
        of their targets; returns how many (0 on object stores). Best effort."""
        kept = [layout.checkpoint_dir("", t, n).lstrip("/") for t, n in keep]
        try:
            return self._backend.tidy(layout.CHECKPOINTS, older_than=older_than, keep=kept)
        except OSError:
            return 0

    # -- health -------------------------------------------------------------------------

    def exists(self) -> bool:
        """True if the root exists (a new local store has no root until the first write)."""
        with self._guard("check", "root"):
            return self._backend.root_exists()

    def check_writable(self) -> None:
        """Prove the store is writable: create and delete a small probe object under
        the root (creating a missing local root). For ``doctor`` and early failure.

        Raises:
            StorageError: ``store ROOT is not writable: REASON``.
        """
        try:
            self._backend.check_writable()
        except (TypeError, AttributeError, NameError, AssertionError):
            raise
        except Exception as exc:
            problem = store_problem(exc)
            if problem is not None:
                raise StorageError(
                    f"store {self.url}: {problem}", transient=is_transient(exc)
                ) from exc
            detail = str(exc) or type(exc).__name__
            if isinstance(exc, PermissionError):
                detail = f"permission denied: {detail}"
            raise StorageError(
                f"store {self.url} is not writable: {detail}", transient=is_transient(exc)
            ) from exc


class ChunkBatch:
    """Chunk writes made durable, then visible, together (one barrier per create).

    :meth:`add` stores one encoded chunk (on the local disk: a temporary file whose
    write-out starts at once; elsewhere one PUT, visible at once); :meth:`commit` is the
    barrier (local: every temporary file ``fdatasync``-ed, renamed into place, folders
    fsynced), after which a manifest may name them; :meth:`discard` removes what was not
    committed (a failed create). Thread-safe.
    """

    def __init__(self, store: Store, batch: WriteBatch) -> None:
        self._store = store
        self._sealed = store.sealing.encrypted
        self._batch = batch
        self._count = 0
        # Asking first pays where a write costs a request and the store may have the
        # chunk; on the local disk the write itself checks, and a store that held no
        # chunk when the batch began needs no asking.
        self._ask = store.remote and not store.holds_no_blob()

    def present(self, digest: str) -> bool:
        """True if the store already holds chunk ``digest``, where asking is cheaper than
        writing (see above; False otherwise: :meth:`add` then tells).

        Raises:
            StorageError: the check failed (after retries).
        """
        return self._ask and self._store.has_blob(digest)

    def add(self, digest: str, parts: Sequence[Buffer]) -> bool:
        """Store the encoded chunk ``parts`` (concatenated) as ``digest``; the caller
        vouches that they encode content whose BLAKE3 is ``digest``. False when the
        store already had it (nothing written).

        Raises:
            StorageError: the write failed (after retries); nothing under its name.
            IntegrityError: a plain object given to an encrypted store (nothing written).
        """
        if self._sealed and not (len(parts) == 1 and is_sealed(parts[0])):
            url = self._store.url
            raise IntegrityError(f"refusing to write blob {digest} in the clear into {url}")
        with self._store._guard("upload", f"blob {digest}"):
            wrote = self._batch.add(Store._blob_key(digest), parts)
        self._count += int(wrote)
        return wrote

    def commit(self) -> None:
        """Make every chunk added durable, then visible.

        Raises:
            StorageError: a sync or rename failed (temporary files are removed).
        """
        with self._store._guard("write", f"{self._count} new blobs"):
            self._batch.commit()

    def discard(self) -> None:
        """Remove every chunk added and not committed (best effort)."""
        self._batch.discard()
