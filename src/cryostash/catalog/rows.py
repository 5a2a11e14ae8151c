"""Helpers of the catalog: row -> dataclass conversion, chunking, portable upserts."""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping, Sequence
from datetime import UTC, datetime
from typing import Any, TypeVar

from sqlalchemy import select
from sqlalchemy.orm import Session

from cryostash.catalog.models import CheckpointRow, EventRow
from cryostash.types import CheckpointInfo, Event, Status

T = TypeVar("T")

#: Most values bound in one ``IN (...)`` (SQLite's historical limit is 999 variables).
CHUNK = 500


def utcnow() -> datetime:
    """The current time, tz-aware UTC."""
    return datetime.now(UTC)


def chunks(items: Sequence[T], size: int = CHUNK) -> Iterator[Sequence[T]]:
    """Consecutive slices of ``items`` of at most ``size`` elements."""
    for start in range(0, len(items), size):
        yield items[start : start + size]


def to_info(row: CheckpointRow) -> CheckpointInfo:
    """The frozen dataclass of a checkpoint row (copies of its JSON values)."""
    return CheckpointInfo(
        id=row.id,
        store_url=row.store_url,
        target=row.target,
        name=row.name,
        status=Status(row.status),
        host=row.host,
        engine=row.engine,
        engine_version=row.engine_version,
        created_at=row.created_at,
        committed_at=row.committed_at,
        size_bytes=row.size_bytes,
        labels=dict(row.labels or {}),
        stats=dict(row.stats or {}),
        lease_expires_at=row.lease_expires_at,
        manifest_digest=row.manifest_digest,
        owner_pid=row.owner_pid,
        owner_start=row.owner_start,
        owner_lock=row.owner_lock,
    )


def to_event(row: EventRow) -> Event:
    """The frozen dataclass of an event row."""
    return Event(
        id=row.id,
        time=row.time,
        host=row.host,
        action=row.action,
        target=row.target,
        name=row.name,
        detail=dict(row.detail or {}),
        store_url=row.store_url,
    )


def insert_ignore(
    session: Session,
    entity: type[Any],
    rows: Sequence[Mapping[str, Any]],
    keys: Sequence[str],
) -> None:
    """INSERT ``rows``, silently skipping those whose primary key ``keys`` exist.

    ``INSERT ... ON CONFLICT DO NOTHING`` on SQLite and PostgreSQL; on any other
    backend, a SELECT of the existing keys followed by a plain INSERT.
    """
    if not rows:
        return
    conn = session.connection()
    dialect = conn.dialect.name
    if dialect == "postgresql":
        from sqlalchemy.dialects.postgresql import insert as pg_insert

        conn.execute(pg_insert(entity).on_conflict_do_nothing(index_elements=list(keys)), rows)
    elif dialect == "sqlite":
        from sqlalchemy.dialects.sqlite import insert as sqlite_insert

        conn.execute(sqlite_insert(entity).on_conflict_do_nothing(), rows)
    else:  # pragma: no cover - only SQLite and PostgreSQL are supported and tested
        from sqlalchemy import insert, tuple_

        columns = [getattr(entity, k) for k in keys]
        wanted = [tuple(r[k] for k in keys) for r in rows]
        existing: set[tuple[Any, ...]] = set()
        for part in chunks(wanted):
            found = conn.execute(select(*columns).where(tuple_(*columns).in_(part)))
            existing.update(tuple(r) for r in found)
        fresh = [r for r, key in zip(rows, wanted, strict=True) if key not in existing]
        if fresh:
            conn.execute(insert(entity), fresh)


def unique_sorted(values: Iterable[str]) -> list[str]:
    """Sorted distinct values (locks are always taken in this order: no deadlock)."""
    return sorted(set(values))
