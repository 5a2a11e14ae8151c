"""The :class:`Catalog`: checkpoint rows, blob references and the event log.

Every method runs in its own transaction and returns frozen dataclasses of
:mod:`cryostash.types` (never ORM rows). Store URLs are normalised with
:func:`~cryostash.urls.canonical_url` (credentials stripped) on the way in.

Concurrency (SQLite file shared by processes, or PostgreSQL shared by hosts):

- :meth:`Catalog.reserve`: the unique key ``(store_url, target, name)`` makes exactly
  one of N concurrent creators win; the others get :class:`CheckpointExists`.
- :meth:`Catalog.commit`, :meth:`Catalog.abort`, :meth:`Catalog.remove` lock the
  checkpoint row: a commit racing an abort/remove of the same row either happens
  first or fails with :class:`CheckpointNotFound`. Ids are never reused.
- :meth:`Catalog.remove` / :meth:`Catalog.abort` versus :meth:`Catalog.add_blob_refs`
  on the same digest are serialised: see :mod:`cryostash.catalog.refs`.
- PostgreSQL deadlocks and serialisation failures are retried (the whole method
  is one transaction).
"""

from __future__ import annotations

import builtins
from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from cryostash.catalog import refs
from cryostash.catalog.database import (
    WRITE,
    create_catalog_engine,
    is_unique_violation,
    translate_errors,
    translated,
)
from cryostash.catalog.models import CheckpointRow, EventRow
from cryostash.catalog.queries import committed
from cryostash.catalog.rows import to_event, to_info, utcnow
from cryostash.catalog.schema import ensure_schema
from cryostash.errors import CatalogError, CheckpointExists, CheckpointNotFound
from cryostash.types import CheckpointFilter, CheckpointInfo, Event, Status
from cryostash.urls import canonical_url, redact_db_url

_PENDING = Status.PENDING.value
_COMMITTED = Status.COMMITTED.value


def _not_found(checkpoint_id: int) -> CheckpointNotFound:
    return CheckpointNotFound(f"checkpoint #{checkpoint_id} does not exist in the catalog")


class Catalog:
    """The SQL catalog of checkpoints (SQLite file or PostgreSQL database).

    Args:
        url: SQLAlchemy URL, e.g. ``sqlite:////var/lib/cryostash/catalog.db`` or
            ``postgresql+psycopg://user:pw@host/db``.

    An empty database is created at the current schema revision; a database at any
    other revision is refused with :class:`SchemaOutdated` (never migrated silently).
    With ``create`` False a SQLite file that does not exist is refused
    (:class:`~cryostash.errors.CatalogNotFound`) instead of created.

    Raises:
        UsageError: bad or unsupported URL.
        CatalogNotFound: ``create`` is False and the SQLite file does not exist.
        CatalogError: unreachable database, foreign tables.
        SchemaOutdated: the database is at an older or unknown schema revision.
    """

    def __init__(self, url: str, *, create: bool = True) -> None:
        self._url = url
        self._engine = create_catalog_engine(url, create=create)
        try:
            with translate_errors(url):
                ensure_schema(self._engine)
        except BaseException:
            self._engine.dispose()
            raise

    @property
    def url(self) -> str:
        """The catalog URL with its password hidden."""
        return redact_db_url(self._url)

    def __repr__(self) -> str:
        return f"Catalog({self.url!r})"

    def __enter__(self) -> Catalog:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def close(self) -> None:
        """Release every pooled connection. The catalog must not be used afterwards."""
        self._engine.dispose()

    @contextmanager
    def _tx(self, *, write: bool) -> Iterator[Session]:
        """A session in one transaction (SQLite: ``BEGIN IMMEDIATE`` when ``write``)."""
        with self._engine.connect() as conn:
            if write:
                conn.execution_options(**{WRITE: True})
            with Session(bind=conn, expire_on_commit=False) as session, session.begin():
                yield session

    # -- checkpoints -------------------------------------------------------------------

    @translated
    def reserve(
        self,
        *,
        store_url: str,
        target: str,
        name: str,
        host: str,
        engine: str,
        labels: Mapping[str, str] | None = None,
        lease_seconds: float,
        owner_pid: int | None = None,
        owner_start: str | None = None,
    ) -> CheckpointInfo:
        """Insert a PENDING row for ``(store_url, target, name)``, leased for a while,
        recording its creator (``owner_pid``, ``owner_start``: see the model).

        Raises:
            CheckpointExists: a row with that key exists, named in ``holder`` (None if it
                went meanwhile): ``checkpoint with name NAME already exists for container
                TARGET`` (Docker's words), and while it is pending the holder after
                them: ``(being created by host H, PID P, since T)``.
        """
        now = utcnow()
        row = CheckpointRow(
            store_url=canonical_url(store_url),
            target=target,
            name=name,
            status=_PENDING,
            host=host,
            engine=engine,
            engine_version=None,
            created_at=now,
            committed_at=None,
            lease_expires_at=now + timedelta(seconds=lease_seconds),
            size_bytes=0,
            labels=dict(labels or {}),
            stats={},
            manifest_digest=None,
            owner_pid=owner_pid,
            owner_start=owner_start,
            owner_lock=None,
        )
        try:
            with self._tx(write=True) as session:
                session.add(row)
                session.flush()
        except IntegrityError as exc:
            if is_unique_violation(exc):
                raise self._exists(store_url, target, name) from None
            raise
        return to_info(row)

    def _exists(self, store_url: str, target: str, name: str) -> CheckpointExists:
        """The error for a taken name, saying who holds it."""
        with self._tx(write=False) as session:
            row = session.scalars(
                select(CheckpointRow).where(
                    CheckpointRow.store_url == canonical_url(store_url),
                    CheckpointRow.target == target,
                    CheckpointRow.name == name,
                )
            ).one_or_none()
            holder = to_info(row) if row is not None else None
        message = f"checkpoint with name {name} already exists for container {target}"
        if holder is not None and holder.status is Status.PENDING:
            pid = f", PID {holder.owner_pid}" if holder.owner_pid is not None else ""
            since = holder.created_at.isoformat(timespec="seconds")
            message += f" (being created by host {holder.host}{pid}, since {since})"
        return CheckpointExists(message, holder)

    @translated
    def renew_lease(
        self, checkpoint_id: int, lease_seconds: float, *, lock: str | None = None
    ) -> CheckpointInfo:
        """Extend the lease of a PENDING row to now + ``lease_seconds`` (and record its
        creator's scratch lock, when given).

        Raises:
            CheckpointNotFound: the row is gone (undone by gc or another create).
            CatalogError: the row is committed.
        """
        with self._tx(write=True) as session:
            row = session.get(CheckpointRow, checkpoint_id, with_for_update=True)
            if row is None:
                raise _not_found(checkpoint_id)
            if row.status != _PENDING:
                raise CatalogError(
                    f"checkpoint {row.name} of container {row.target} is not pending"
                )
            row.lease_expires_at = utcnow() + timedelta(seconds=lease_seconds)
            if lock is not None:
                row.owner_lock = lock
            session.flush()
            return to_info(row)

    @translated
    def commit(
        self,
        checkpoint_id: int,
        *,
        size_bytes: int,
        stats: Mapping[str, Any],
        engine_version: str | None,
        manifest_digest: str,
        host: str | None = None,
    ) -> CheckpointInfo:
        """PENDING -> COMMITTED (``committed_at`` = now, lease cleared): now visible.
        ``host``: the host the dump was made on, when not the one that reserved the row
        (an imported archive's node); it replaces the row's host once the lease is gone.

        Raises:
            CheckpointNotFound: the row is gone (aborted, e.g. by gc after its lease).
            CatalogError: the row is already committed.
        """
        with self._tx(write=True) as session:
            row = session.get(CheckpointRow, checkpoint_id, with_for_update=True)
            if row is None:
                raise _not_found(checkpoint_id)
            if row.status != _PENDING:
                raise CatalogError(
                    f"checkpoint {row.name} of container {row.target} is already committed"
                )
            row.status = _COMMITTED
            row.committed_at = utcnow()
            row.lease_expires_at = None
            row.owner_pid = row.owner_start = row.owner_lock = None
            row.size_bytes = size_bytes
            row.stats = dict(stats)
            row.engine_version = engine_version
            row.manifest_digest = manifest_digest
            if host is not None:
                row.host = host
            session.flush()
            return to_info(row)

    @translated
    def abort(self, checkpoint_id: int) -> builtins.list[str]:
        """Delete a PENDING row and its references.

        Returns the digests now referenced by no row of that store (their ``blobs``
        rows are deleted too): candidates for deletion from the store. A missing row
        gives ``[]`` (abort is idempotent).

        Raises:
            CatalogError: the row is committed (use :meth:`remove`).
        """
        with self._tx(write=True) as session:
            orphans = refs.delete_checkpoint(session, checkpoint_id, pending_only=True)
        return orphans if orphans is not None else []

    @translated
    def remove(self, checkpoint_id: int) -> builtins.list[str]:
        """Delete a row (any status) and its references, in one transaction.

        Returns the digests now referenced by no row (pending included) of that store,
        whose ``blobs`` rows are deleted in the same transaction. See the module
        docstring for the guarantee against a concurrent :meth:`add_blob_refs`.

        Raises:
            CheckpointNotFound: no row with that id.
        """
        with self._tx(write=True) as session:
            orphans = refs.delete_checkpoint(session, checkpoint_id, pending_only=False)
        if orphans is None:
            raise _not_found(checkpoint_id)
        return orphans

    @translated
    def get(self, store_url: str, target: str, name: str) -> CheckpointInfo:
        """The COMMITTED checkpoint ``(target, name)`` of a store.

        Raises:
            CheckpointNotFound: ``checkpoint NAME does not exist for container TARGET``
                (also while it is only pending).
        """
        with self._tx(write=False) as session:
            row = session.scalars(
                select(CheckpointRow).where(
                    CheckpointRow.store_url == canonical_url(store_url),
                    CheckpointRow.target == target,
                    CheckpointRow.name == name,
                    CheckpointRow.status == _COMMITTED,
                )
            ).one_or_none()
            if row is None:
                raise CheckpointNotFound(f"checkpoint {name} does not exist for container {target}")
            return to_info(row)

    @translated
    def get_by_id(self, checkpoint_id: int) -> CheckpointInfo:
        """The row with that id, whatever its status (for the manager and gc)."""
        with self._tx(write=False) as session:
            row = session.get(CheckpointRow, checkpoint_id)
            if row is None:
                raise _not_found(checkpoint_id)
            return to_info(row)

    @translated
    def manifest_digest(self, checkpoint_id: int) -> str | None:
        """The BLAKE3 digest of the manifest recorded at commit (None while pending)."""
        with self._tx(write=False) as session:
            row = session.get(CheckpointRow, checkpoint_id)
            if row is None:
                raise _not_found(checkpoint_id)
            return row.manifest_digest

    @translated
    def list(
        self,
        store_url: str | None,
        target: str | None = None,
        filters: CheckpointFilter | None = None,
    ) -> builtins.list[CheckpointInfo]:
        """COMMITTED checkpoints, sorted by (target, name); ``store_url=None``: all stores.

        ``filters`` (labels, host, since) are applied in the same one query.
        """
        query = committed(self._engine.dialect.name, store_url, target, filters).order_by(
            CheckpointRow.target, CheckpointRow.name, CheckpointRow.store_url
        )
        with self._tx(write=False) as session:
            return [to_info(row) for row in session.scalars(query)]

    @translated
    def names(
        self,
        store_url: str | None,
        target: str | None = None,
        filters: CheckpointFilter | None = None,
    ) -> builtins.list[tuple[str, str]]:
        """The ``(target, name)`` of each row :meth:`list` returns, in its order (no row
        is built: ``ls`` of a big catalog)."""
        query = committed(self._engine.dialect.name, store_url, target, filters).order_by(
            CheckpointRow.target, CheckpointRow.name, CheckpointRow.store_url
        )
        pairs = query.with_only_columns(CheckpointRow.target, CheckpointRow.name)
        with self._tx(write=False) as session:
            return [(t, n) for t, n in session.execute(pairs)]

    @translated
    def latest(
        self, store_url: str, target: str, filters: CheckpointFilter | None = None
    ) -> CheckpointInfo | None:
        """The newest COMMITTED checkpoint of ``target`` in the store matching ``filters``
        (greatest ``created_at``, the manifest's creation time, then greatest id), or None.
        One query."""
        query = (
            committed(self._engine.dialect.name, store_url, target, filters)
            .order_by(CheckpointRow.created_at.desc(), CheckpointRow.id.desc())
            .limit(1)
        )
        with self._tx(write=False) as session:
            row = session.scalars(query).first()
            return to_info(row) if row is not None else None

    @translated
    def pending(
        self, store_url: str | None = None, *, expired_at: datetime | None = None
    ) -> builtins.list[CheckpointInfo]:
        """PENDING rows (oldest first); with ``expired_at``, only leases expired by then."""
        query = select(CheckpointRow).where(CheckpointRow.status == _PENDING)
        if store_url is not None:
            query = query.where(CheckpointRow.store_url == canonical_url(store_url))
        if expired_at is not None:
            query = query.where(CheckpointRow.lease_expires_at <= expired_at)
        query = query.order_by(CheckpointRow.created_at, CheckpointRow.id)
        with self._tx(write=False) as session:
            return [to_info(row) for row in session.scalars(query)]

    # -- blobs -------------------------------------------------------------------------

    @translated
    def add_blob_refs(self, checkpoint_id: int, blobs: Mapping[str, int]) -> set[str]:
        """Record that the checkpoint uses these blobs (digest -> size); idempotent.

        Upserts the ``blobs`` rows (in the checkpoint's store) and inserts the
        references, in one transaction. Returns the digests the catalog cannot vouch
        for: those no COMMITTED checkpoint of the store references (a digest only
        pending checkpoints use may not be uploaded yet, and never will be if their
        create fails). The caller must make sure every returned digest is in the store
        (upload it, or find it there); the others are.

        Raises:
            CheckpointNotFound: no row with that id.
        """
        with self._tx(write=True) as session:
            fresh = refs.add_refs(session, checkpoint_id, dict(blobs))
        if fresh is None:
            raise _not_found(checkpoint_id)
        return fresh

    @translated
    def known_blobs(self, store_url: str, digests: Iterable[str]) -> set[str]:
        """Which of ``digests`` the catalog records as present in that store."""
        with self._tx(write=False) as session:
            return refs.known(session, canonical_url(store_url), digests)

    @translated
    def referenced_digests(self, store_url: str) -> set[str]:
        """Every digest referenced by a row (pending included) of that store (for gc)."""
        with self._tx(write=False) as session:
            return refs.referenced(session, canonical_url(store_url))

    # -- events ------------------------------------------------------------------------

    @translated
    def record_event(
        self,
        *,
        host: str,
        action: str,
        target: str,
        name: str,
        store_url: str | None,
        detail: Mapping[str, Any] | None = None,
    ) -> Event:
        """Append an event (``time`` = now) and return it."""
        row = EventRow(
            time=utcnow(),
            host=host,
            action=action,
            target=target,
            name=name,
            store_url=canonical_url(store_url) if store_url is not None else None,
            detail=dict(detail or {}),
        )
        with self._tx(write=True) as session:
            session.add(row)
            session.flush()
        return to_event(row)

    @translated
    def events(self, target: str | None = None, limit: int | None = None) -> builtins.list[Event]:
        """Events, oldest first; with ``limit``, the most recent ``limit`` of them."""
        query = select(EventRow)
        if target is not None:
            query = query.where(EventRow.target == target)
        if limit is not None:
            query = query.order_by(EventRow.time.desc(), EventRow.id.desc()).limit(max(limit, 0))
        else:
            query = query.order_by(EventRow.time, EventRow.id)
        with self._tx(write=False) as session:
            rows = builtins.list(session.scalars(query))
        if limit is not None:
            rows.reverse()
        return [to_event(row) for row in rows]
