"""``Store``: the checkpoint store over one :class:`~cryostash.objects.backend.Backend`.

Layout under the root (see :mod:`cryostash.store.layout`)::

    checkpoints/<target>/<name>/manifest.json   written last, create-only: the commit marker
    blobs/<h[0:2]>/<h>                          one chunk: codec tag + zstd frame (or raw)

A facade, as wide as its callers need, over one concept each:

- :attr:`Store.manifests` (:class:`~cryostash.store.manifests.Manifests`): write, read,
  load (the one loader, checked against the catalog's digest), delete;
- :attr:`Store.chunks` (:class:`~cryostash.store.chunks.Chunks`): encode, batch writes,
  read back decoded and verified (through the chunk cache of :meth:`Store.with_cache`),
  delete;
- :attr:`Store.maintenance` (:class:`~cryostash.store.maintenance.Maintenance`): the
  inventory ``gc``, ``verify`` and ``rebuild`` work from, strays, empty folders;
- keys and sealing (:attr:`Store.keyring`, :attr:`Store.keys`, :attr:`Store.sealing`,
  :meth:`Store.unlock`), and the store's health (:meth:`Store.exists`,
  :meth:`Store.check_writable`).

Every byte goes through the object seam (:mod:`cryostash.objects`): the backend the URL
names, wrapped by the retrying backend (the one place where calls are retried) and, for a
transfer that uses the chunk cache, the caching one. It knows nothing of SQL or CRIU.
Ordering is the caller's job: write every chunk a manifest names *before* the manifest.

Errors: backend errors are translated in one place (:mod:`cryostash.store.translate`);
callers only see cryostash errors. Thread safety: a Store holds no mutable state of its
own but the retry counters and the key state; every method may be called from several
threads.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from cryostash.config.secrets import PassphraseSource
from cryostash.objects.backend import Backend
from cryostash.objects.cache import ChunkCache
from cryostash.objects.caching import CachingBackend
from cryostash.objects.errors import BUGS
from cryostash.objects.retry_policy import RetryPolicy
from cryostash.objects.retrying import RetryingBackend
from cryostash.store.chunks import Chunks
from cryostash.store.keys import Keyring, KeyState
from cryostash.store.maintenance import Maintenance
from cryostash.store.manifests import Manifests
from cryostash.store.sealing import Sealing
from cryostash.store.translate import not_writable, translating


class Store:
    """A checkpoint store rooted at ``url`` (a local path or any fsspec URL).

    Args:
        url: root of the store: ``/srv/store``, ``file:///srv/store``,
            ``s3://bucket/prefix``, ``memory://name``... A local root that does not
            exist is created on first write.
        storage_options: passed to fsspec (``key``, ``secret``, ``endpoint_url``...);
            never shown, never persisted.
        retry: how transient failures are retried (default: :class:`RetryPolicy`).
        passphrase, expect_encrypted: an encrypted store's passphrase source; refuse a
            plain store (:class:`~.keys.KeyState`; keys open on first use or :meth:`unlock`).

    Attributes:
        url: canonical root URL without credentials (a local root is an absolute
            path): safe to show and to use as the catalog's store key.
        remote: requests cross a network (every fsspec store): a chunk cache and more
            parallel transfers pay off.
        supports_atomic_create: manifests are create-only even against writers on other
            hosts. False means exists-then-write.
        manifests, chunks, maintenance: the store's parts (see the module docstring).

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
        from cryostash.objects.location import open_backend

        retrying = RetryingBackend(open_backend(url, storage_options), retry)
        self._setup(retrying, retrying, KeyState(passphrase, expect_encrypted), None)

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
        store._setup(retrying, retrying, KeyState(passphrase, False), None)
        return store

    def _setup(
        self,
        backend: Backend,
        retrying: RetryingBackend,
        keys: KeyState,
        cache: CachingBackend | None,
    ) -> None:
        self._backend = backend
        self._retrying = retrying
        self._keys = keys
        self.url: str = backend.url
        self.remote: bool = backend.remote
        self.supports_atomic_create: bool = backend.atomic_create
        sealing = self._sealing
        self.manifests = Manifests(backend, self.url, sealing)
        self.chunks = Chunks(backend, self.url, sealing, cache)
        self.maintenance = Maintenance(backend, self.url)

    def __repr__(self) -> str:
        return f"Store({self.url!r})"

    def _sealing(self) -> Sealing:
        return self._keys.sealing(self.keyring)

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
        :class:`~cryostash.objects.caching.CachingBackend`); same retry counters and keys."""
        store = Store.__new__(Store)
        caching = CachingBackend(self._backend, cache)
        store._setup(caching, self._retrying, self._keys, caching)
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
        return self._sealing()

    def unlock(self, *, restore: bool = False) -> bool:
        """Open the key now (``restore``: to read checkpoints); True if encrypted. Raises
        KeyRequired, WrongKey, RestoreKeyRequired (:meth:`~.keys.KeyState.sealing`)."""
        return self._keys.sealing(self.keyring, restore=restore).encrypted

    def exists(self) -> bool:
        """True if the root exists (a new local store has no root until the first write)."""
        with translating("check", "root", url=self.url):
            return self._backend.root_exists()

    def check_writable(self) -> None:
        """Prove the store is writable: create and delete a small probe object under
        the root (creating a missing local root). For ``doctor`` and early failure.

        Raises:
            StorageError: ``store ROOT is not writable: REASON`` (or ``store ROOT: WHY``
                when the store cannot be used at all).
        """
        try:
            self._backend.check_writable()
        except BUGS:
            raise
        except Exception as exc:
            raise not_writable(exc, self.url) from exc
