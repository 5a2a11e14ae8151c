"""The read side of a SQLite catalog, on the standard library's ``sqlite3``: what ``ls``,
``inspect`` and ``events`` ask, answered without importing SQLAlchemy.

:func:`open_reader` returns a :class:`SqliteReader` for a SQLite catalog file that exists
and is at :data:`~cryostash.catalog.revisions.HEAD_REVISION`, and None for anything else
(another database, a URL with options, a missing file, an empty or outdated database, a
file it cannot open): the caller then opens the full :class:`~cryostash.catalog.Catalog`,
which creates, refuses or reports exactly as before. So a reader never creates, migrates
or writes anything.

Contract: :meth:`SqliteReader.list`, :meth:`~SqliteReader.latest`,
:meth:`~SqliteReader.get` and :meth:`~SqliteReader.events` return what the
:class:`~cryostash.catalog.Catalog` methods of the same names return on the same database
(same rows, same order, same values; ``tests/test_catalog_reader.py`` compares them), and
:meth:`~SqliteReader.names` the ``(target, name)`` pairs of :meth:`~SqliteReader.list`
without building a row (``ls`` of 100,000 checkpoints). Each call is one statement (one
consistent read; WAL readers never block writers). Database errors are raised as
:class:`~cryostash.errors.CatalogError` naming the catalog.
"""

from __future__ import annotations

import builtins
import json
import sqlite3
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import Any, Protocol
from urllib.parse import quote

from cryostash.catalog.revisions import HEAD_REVISION, VERSION_TABLE
from cryostash.errors import CatalogError, CheckpointNotFound
from cryostash.types import CheckpointFilter, CheckpointInfo, Event, Status
from cryostash.urls import canonical_url, sqlite_file

_COMMITTED = Status.COMMITTED.value
#: How long a read waits for a lock (as :data:`cryostash.catalog.database.SQLITE_BUSY_TIMEOUT_S`).
_BUSY_TIMEOUT_S = 30.0
_COLUMNS = (
    "id, store_url, target, name, status, host, engine, engine_version, created_at, "
    "committed_at, lease_expires_at, size_bytes, labels, stats, manifest_digest"
)
_EVENT_COLUMNS = "id, time, host, action, target, name, detail, store_url"


class CatalogReader(Protocol):
    """What the read verbs ask of a catalog: a :class:`SqliteReader` or the
    :class:`~cryostash.catalog.Catalog` itself (same contracts)."""

    def list(
        self, store_url: str | None, target: str | None = None,
        filters: CheckpointFilter | None = None,
    ) -> builtins.list[CheckpointInfo]: ...

    def names(
        self, store_url: str | None, target: str | None = None,
        filters: CheckpointFilter | None = None,
    ) -> builtins.list[tuple[str, str]]: ...

    def latest(
        self, store_url: str, target: str, filters: CheckpointFilter | None = None
    ) -> CheckpointInfo | None: ...

    def get(self, store_url: str, target: str, name: str) -> CheckpointInfo: ...

    def events(
        self, target: str | None = None, limit: int | None = None
    ) -> builtins.list[Event]: ...


def open_reader(url: str) -> SqliteReader | None:
    """A reader of the SQLite catalog at ``url`` if it is a plain file at head, else None
    (see the module docstring). Never creates or changes the file."""
    path = sqlite_file(url)
    if path is None or not path.is_file():
        return None
    try:
        conn = sqlite3.connect(
            f"file:{quote(str(path))}?mode=rw", uri=True, timeout=_BUSY_TIMEOUT_S,
            isolation_level=None, check_same_thread=False,
        )
    except sqlite3.Error:
        return None
    try:
        rows = conn.execute(f"SELECT version_num FROM {VERSION_TABLE}").fetchall()
    except sqlite3.Error:
        rows = []
    if rows != [(HEAD_REVISION,)]:
        conn.close()
        return None
    return SqliteReader(url, conn)


def _when(text: str | None) -> datetime | None:
    """A stored time (naive UTC text, as SQLAlchemy writes it) as tz-aware UTC."""
    return None if text is None else datetime.fromisoformat(text).replace(tzinfo=UTC)


def _stored_time(value: datetime) -> str:
    """A tz-aware time in the form the catalog stores (UTC, always with microseconds)."""
    if value.tzinfo is None or value.utcoffset() is None:
        raise ValueError(f"naive datetime {value!r}: the catalog stores tz-aware datetimes")
    return value.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S.%f")


def _json(text: str | None) -> dict[str, Any]:
    return dict(json.loads(text) or {}) if text is not None else {}


def _info(row: Sequence[Any]) -> CheckpointInfo:
    created = _when(row[8])
    assert created is not None  # NOT NULL
    return CheckpointInfo(
        id=row[0], store_url=row[1], target=row[2], name=row[3], status=Status(row[4]),
        host=row[5], engine=row[6], engine_version=row[7], created_at=created,
        committed_at=_when(row[9]), lease_expires_at=_when(row[10]), size_bytes=row[11],
        labels=_json(row[12]), stats=_json(row[13]), manifest_digest=row[14],
    )


def _event(row: Sequence[Any]) -> Event:
    time = _when(row[1])
    assert time is not None  # NOT NULL
    return Event(id=row[0], time=time, host=row[2], action=row[3], target=row[4],
                 name=row[5], detail=_json(row[6]), store_url=row[7])


class SqliteReader:
    """Read-only queries on one SQLite catalog connection (see the module docstring)."""

    def __init__(self, url: str, conn: sqlite3.Connection) -> None:
        self._url = url
        self._conn = conn

    def close(self) -> None:
        """Close the connection. The reader must not be used afterwards."""
        self._conn.close()

    @contextmanager
    def _errors(self) -> Iterator[None]:
        try:
            yield
        except sqlite3.Error as exc:
            from cryostash.urls import redact_db_url

            reason = " ".join(str(exc).split()) or type(exc).__name__
            raise CatalogError(f"catalog {redact_db_url(self._url)}: {reason}") from exc

    def _query(self, sql: str, params: Sequence[Any]) -> builtins.list[Any]:
        with self._errors():
            return self._conn.execute(sql, params).fetchall()

    @staticmethod
    def _committed(
        store_url: str | None, target: str | None, filters: CheckpointFilter | None
    ) -> tuple[str, list[Any]]:
        """WHERE clause (and its parameters) of :func:`cryostash.catalog.queries.committed`."""
        where, params = ["status = ?"], [_COMMITTED]
        if store_url is not None:
            where.append("store_url = ?")
            params.append(canonical_url(store_url))
        if target is not None:
            where.append("target = ?")
            params.append(target)
        if filters is not None:
            for key, value in sorted(filters.labels.items()):
                where.append("EXISTS (SELECT 1 FROM json_each(checkpoints.labels) AS each "
                             "WHERE each.key = ? AND each.value = ?)")
                params += [key, value]
            if filters.host is not None:
                where.append("host = ?")
                params.append(filters.host)
            if filters.since is not None:
                where.append("created_at >= ?")
                params.append(_stored_time(filters.since))
        return " AND ".join(where), params

    def list(
        self,
        store_url: str | None,
        target: str | None = None,
        filters: CheckpointFilter | None = None,
    ) -> builtins.list[CheckpointInfo]:
        """As :meth:`Catalog.list`: COMMITTED rows sorted by (target, name, store)."""
        where, params = self._committed(store_url, target, filters)
        sql = (f"SELECT {_COLUMNS} FROM checkpoints WHERE {where} "
               "ORDER BY target, name, store_url")
        return [_info(row) for row in self._query(sql, params)]

    def names(
        self,
        store_url: str | None,
        target: str | None = None,
        filters: CheckpointFilter | None = None,
    ) -> builtins.list[tuple[str, str]]:
        """The ``(target, name)`` of each row :meth:`list` returns, in its order."""
        where, params = self._committed(store_url, target, filters)
        sql = f"SELECT target, name FROM checkpoints WHERE {where} ORDER BY target, name, store_url"
        return self._query(sql, params)

    def latest(
        self, store_url: str, target: str, filters: CheckpointFilter | None = None
    ) -> CheckpointInfo | None:
        """As :meth:`Catalog.latest`: the newest matching COMMITTED row, or None."""
        where, params = self._committed(store_url, target, filters)
        sql = (f"SELECT {_COLUMNS} FROM checkpoints WHERE {where} "
               "ORDER BY created_at DESC, id DESC LIMIT 1")
        rows = self._query(sql, params)
        return _info(rows[0]) if rows else None

    def get(self, store_url: str, target: str, name: str) -> CheckpointInfo:
        """As :meth:`Catalog.get`: the COMMITTED row, or CheckpointNotFound."""
        sql = (f"SELECT {_COLUMNS} FROM checkpoints "
               "WHERE store_url = ? AND target = ? AND name = ? AND status = ?")
        rows = self._query(sql, (canonical_url(store_url), target, name, _COMMITTED))
        if not rows:
            raise CheckpointNotFound(f"checkpoint {name} does not exist for container {target}")
        return _info(rows[0])

    def events(self, target: str | None = None, limit: int | None = None) -> builtins.list[Event]:
        """As :meth:`Catalog.events`: oldest first; with ``limit``, the last ``limit``."""
        params: builtins.list[Any] = []
        where = ""
        if target is not None:
            where, params = "WHERE target = ?", [target]
        if limit is None:
            order = "ORDER BY time, id"
        else:
            order = "ORDER BY time DESC, id DESC LIMIT ?"
            params.append(max(limit, 0))
        rows = self._query(f"SELECT {_EVENT_COLUMNS} FROM events {where} {order}", params)
        if limit is not None:
            rows.reverse()
        return [_event(row) for row in rows]
