"""``Repository``: what every verb works on, taken the same way by all of them.

A repository is the context of one set of settings: the catalog (opened on first use,
or given), the stores by checkpoint-folder URL (the default one and any
``--checkpoint-dir``), the host recorded in events, the number of parallel transfers,
the progress factory and where notices go. Every operation (:mod:`cryostash.operations`)
takes one as its first argument; :class:`~cryostash.manager.CheckpointManager` wraps one
(``mgr.repository``). Besides opening and caching what the verbs share, it answers the
lookups they share (:meth:`Repository.checkpoint`, :meth:`~Repository.latest`,
:meth:`~Repository.manifest`, :meth:`~Repository.engine`, :meth:`~Repository.scratch`).
It holds no verb policy.

Reading or writing: :attr:`Repository.create` (True by default, the library's behaviour)
lets the first use create a store or SQLite catalog that does not exist. A front end
running a verb that only reads sets it False: then a store or catalog chosen explicitly
(:attr:`~cryostash.config.Settings.store_given`, ``catalog_given``, a ``checkpoint_dir``)
that does not exist is an error (:class:`~cryostash.errors.StoreNotFound`,
:class:`~cryostash.errors.CatalogNotFound`, exit 3), while the default ones, never
initialised, read as empty (the default catalog is then an empty in-memory one; nothing
is created on disk). Only local stores are checked (an object store is not probed).

Not thread-safe; use one per thread. Close it (or use it as a context manager) to
release the catalog connection.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from cryostash.catalog.reader import CatalogReader, SqliteReader, open_reader
from cryostash.config import Settings, secrets
from cryostash.errors import CheckpointNotFound, StoreNotFound
from cryostash.names import validate_name, validate_target
from cryostash.repository.manifests import verified_manifest
from cryostash.transfer.scratch import private_scratch
from cryostash.urls import sqlite_file

#: What a reading verb opens instead of a default SQLite catalog that does not exist yet.
EMPTY_CATALOG = "sqlite://"

if TYPE_CHECKING:
    from cryostash.catalog import Catalog
    from cryostash.engines.base import Engine
    from cryostash.store import Manifest, Store
    from cryostash.transfer.progress import Progress
    from cryostash.types import CheckpointFilter, CheckpointInfo


class Repository:
    """The catalog, the stores, the host and the transfer settings of one set of settings.

    Args:
        settings: resolved settings (see :func:`cryostash.config.resolve_settings`).
        catalog: an open catalog to use instead of opening ``settings.catalog_url``
            (it is closed by :meth:`close` all the same).
        jobs: parallel transfers.
        progress: called with a phase name (:data:`cryostash.transfer.progress.PHASES`:
            ``upload``, ``download``, ``dump``, ...) when a long step starts; returns an
            fsspec-style callback (``set_size``, ``relative_update``) or None.
        notice: called with one line for people when an operation has to wait for
            something (e.g. a PID still held); None: notices are dropped.
    """

    def __init__(
        self,
        settings: Settings,
        *,
        catalog: Catalog | None = None,
        jobs: int = 4,
        progress: Callable[[str], Progress | None] | None = None,
        notice: Callable[[str], None] | None = None,
    ) -> None:
        self.settings = settings
        self.jobs = jobs
        self._progress = progress
        self._notice = notice
        self._catalog = catalog
        self._reader: SqliteReader | None = None
        self._stores: dict[str, Store] = {}
        self._secret: bytes | None = None
        #: May an encrypted store's passphrase be asked on the terminal (the CLI: yes).
        self.ask_passphrase = False
        #: May a missing store or SQLite catalog be created (False: a verb that reads).
        self.create = True

    @property
    def host(self) -> str:
        """This host's name, as events and new checkpoints record it."""
        return self.settings.host

    @property
    def catalog(self) -> Catalog:
        """The catalog, opened on first use (fails with SchemaOutdated if old)."""
        if self._catalog is None:
            from cryostash.catalog import Catalog

            url = self.settings.catalog_url
            if not self.create and not self.settings.catalog_given:
                path = sqlite_file(url)
                if path is not None and not path.expanduser().is_file():
                    url = EMPTY_CATALOG  # the default catalog, never created: empty
            self._catalog = Catalog(url, create=self.create)
        return self._catalog

    @property
    def reader(self) -> CatalogReader:
        """What the read verbs query: for a SQLite catalog file at head, a
        :class:`~cryostash.catalog.reader.SqliteReader` (``sqlite3``, no SQLAlchemy: a
        fast start-up); otherwise, or when the catalog is already open, the catalog."""
        if self._catalog is None and self._reader is None:
            self._reader = open_reader(self.settings.catalog_url)
        return self._reader if self._reader is not None else self.catalog

    def store(self, checkpoint_dir: str | None = None) -> Store:
        """The store for ``checkpoint_dir`` (a URL or path) or the default store; one
        :class:`Store` per URL, kept for the repository's life.

        Raises:
            StoreNotFound: :attr:`create` is False and a local store chosen explicitly
                does not exist (``store PATH does not exist ...``).
        """
        url = checkpoint_dir or self.settings.store_url
        if url not in self._stores:
            from cryostash.store import Store

            store = Store(
                url,
                self.settings.storage_options,
                passphrase=self._passphrase,
                expect_encrypted=secrets.is_set(),
            )
            given = checkpoint_dir is not None or self.settings.store_given
            if not self.create and given and not store.remote and not store.exists():
                raise StoreNotFound(
                    f"store {store.url} does not exist (the first `cryostash create` or "
                    "`cryostash store init` creates it)"
                )
            self._stores[url] = store
        return self._stores[url]

    def _passphrase(self) -> bytes | None:
        """An encrypted store's passphrase: CRYOSTASH_PASSWORD[_FILE|_COMMAND], else a
        prompt when ``ask_passphrase`` and stdin is a terminal (read once, kept)."""
        if self._secret is None:
            self._secret = secrets.passphrase(ask=self.ask_passphrase)
        return self._secret

    def progress_for(self, phase: str) -> Progress | None:
        """The progress callback for ``phase`` (``upload``, ``download``), if any."""
        return self._progress(phase) if self._progress is not None else None

    @contextlib.contextmanager
    def tracking(self, phase: str) -> Iterator[Progress | None]:
        """:meth:`progress_for` ``phase`` for the block, closed when it ends (a callback
        with a ``close`` method, as the CLI's bars and fsspec's have, is closed however
        the block ends)."""
        callback = self.progress_for(phase)
        try:
            yield callback
        finally:
            close = getattr(callback, "close", None)
            if callable(close):
                close()

    def notify(self, text: str) -> None:
        """Tell the user ``text`` (one line: what the operation waits for), if anyone
        listens (``notice``)."""
        if self._notice is not None:
            self._notice(text)

    # -- the lookups every verb shares ---------------------------------------------

    def checkpoint(
        self, target: str, name: str, checkpoint_dir: str | None = None
    ) -> CheckpointInfo:
        """The committed checkpoint ``target``/``name`` of the store ``checkpoint_dir``.

        Raises:
            InvalidName: bad target or name.
            CheckpointNotFound: ``checkpoint NAME does not exist for container TARGET``.
        """
        validate_target(target)
        validate_name(name)
        return self.reader.get(self.store(checkpoint_dir).url, target, name)

    def latest(
        self,
        target: str,
        filters: CheckpointFilter | None = None,
        checkpoint_dir: str | None = None,
    ) -> CheckpointInfo:
        """The newest committed checkpoint of ``target`` (by commit time, then id) that
        matches ``filters`` (``--latest``).

        Raises:
            CheckpointNotFound: ``no checkpoint of container TARGET matches (label K=V,
                host H, since T)`` (``... exists`` without filters).
        """
        validate_target(target)
        found = self.reader.latest(self.store(checkpoint_dir).url, target, filters)
        if found is None:
            criteria = filters.describe() if filters else ""
            raise CheckpointNotFound(
                f"no checkpoint of container {target} matches ({criteria})"
                if criteria
                else f"no checkpoint of container {target} exists"
            )
        return found

    def manifest(self, store: Store, info: CheckpointInfo) -> Manifest:
        """The manifest of ``info`` in ``store``, checked against the catalog's digest
        (:func:`~cryostash.repository.manifests.verified_manifest`)."""
        return verified_manifest(store, info)

    def engine(self, name: str) -> Engine:
        """The engine called ``name``, configured with this repository's CRIU binary."""
        from cryostash.engines import get_engine

        return get_engine(name, criu_path=self.settings.criu_path)

    @contextlib.contextmanager
    def scratch(
        self, purpose: str, on_error: Sequence[Callable[[BaseException], None]] = ()
    ) -> Iterator[Path]:
        """A private (0700) scratch folder, locked while in use (so ``gc`` can tell it from
        one a crash left), removed on exit whatever happens. When the block fails, each of
        ``on_error`` (a list the block may still append to) is called with the error
        first, while the folder still exists; one may raise to replace the error."""
        with private_scratch(self.settings.scratch_dir, purpose) as path:
            try:
                yield path
            except BaseException as exc:
                for hook in on_error:
                    hook(exc)
                raise

    def close(self) -> None:
        """Release the catalog connection (a later use opens it again)."""
        if self._reader is not None:
            self._reader.close()
            self._reader = None
        if self._catalog is not None:
            self._catalog.close()
            self._catalog = None

    def __enter__(self) -> Repository:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
