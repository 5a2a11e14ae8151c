"""SQLAlchemy 2.0 models of the catalog (schema revision ``0002``).

These classes are private to :mod:`cryostash.catalog`: the :class:`~.Catalog`
converts rows to the frozen dataclasses of :mod:`cryostash.types` before returning.

Any change here needs a new Alembic revision in the top-level ``migrations/``
folder (``tests/test_migrations.py`` compares the two).
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    CheckConstraint,
    DateTime,
    Dialect,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    UniqueConstraint,
    text,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column
from sqlalchemy.types import TypeDecorator

#: Deterministic constraint names, so migrations (and SQLite batch ALTERs) can name them.
NAMING_CONVENTION = {
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}

URL_LENGTH = 1024
NAME_LENGTH = 255
DIGEST_LENGTH = 128


class UTCDateTime(TypeDecorator[datetime]):
    """A timezone-aware datetime stored as UTC, returned as tz-aware UTC everywhere.

    PostgreSQL stores ``timestamp with time zone``; SQLite has no time zones, so
    the value is converted to UTC and stored naive (ISO text sorts correctly), and
    read back with ``tzinfo=UTC``. Naive datetimes are refused on the way in.
    """

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None or value.utcoffset() is None:
            raise ValueError(f"naive datetime {value!r}: the catalog stores tz-aware datetimes")
        value = value.astimezone(UTC)
        if dialect.name == "sqlite":
            return value.replace(tzinfo=None)
        return value

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            return value.replace(tzinfo=UTC)
        return value.astimezone(UTC)


class Base(DeclarativeBase):
    """Declarative base of the catalog models."""

    metadata = MetaData(naming_convention=NAMING_CONVENTION)
    type_annotation_map = {  # noqa: RUF012 - SQLAlchemy reads this class attribute
        datetime: UTCDateTime(),
        dict[str, Any]: JSON(),
    }


class CheckpointRow(Base):
    """One checkpoint: PENDING while being created, COMMITTED once visible."""

    __tablename__ = "checkpoints"
    __table_args__ = (
        UniqueConstraint("store_url", "target", "name"),
        CheckConstraint("status IN ('pending', 'committed')", name="status"),
        # ids are never reused (SQLite would otherwise reuse the highest deleted id):
        # a stale id held by a crashed creator must never designate a newer checkpoint.
        {"sqlite_autoincrement": True},
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    store_url: Mapped[str] = mapped_column(String(URL_LENGTH))
    target: Mapped[str] = mapped_column(String(NAME_LENGTH))
    name: Mapped[str] = mapped_column(String(NAME_LENGTH))
    status: Mapped[str] = mapped_column(String(16))
    host: Mapped[str] = mapped_column(String(NAME_LENGTH))
    engine: Mapped[str] = mapped_column(String(64))
    engine_version: Mapped[str | None] = mapped_column(String(128))
    created_at: Mapped[datetime]
    committed_at: Mapped[datetime | None]
    lease_expires_at: Mapped[datetime | None]
    size_bytes: Mapped[int] = mapped_column(BigInteger, default=0, server_default=text("0"))
    labels: Mapped[dict[str, Any]]
    stats: Mapped[dict[str, Any]]
    manifest_digest: Mapped[str | None] = mapped_column(String(DIGEST_LENGTH))
    # The creator of a PENDING row (revision 0003; None once committed): its PID, the
    # identity of that process (``BOOT_ID/PIDNS/STARTTIME``) and its scratch lock.
    owner_pid: Mapped[int | None] = mapped_column(Integer)
    owner_start: Mapped[str | None] = mapped_column(String(NAME_LENGTH))
    owner_lock: Mapped[str | None] = mapped_column(String(URL_LENGTH))


class BlobRow(Base):
    """A content-addressed blob the catalog records as present in a store."""

    __tablename__ = "blobs"

    store_url: Mapped[str] = mapped_column(String(URL_LENGTH), primary_key=True)
    digest: Mapped[str] = mapped_column(String(DIGEST_LENGTH), primary_key=True)
    size: Mapped[int] = mapped_column(BigInteger)
    created_at: Mapped[datetime]


class CheckpointBlobRow(Base):
    """A reference from a checkpoint (pending or committed) to a blob of its store."""

    __tablename__ = "checkpoint_blobs"
    __table_args__ = (Index("ix_checkpoint_blobs_digest", "digest"),)

    checkpoint_id: Mapped[int] = mapped_column(
        Integer, ForeignKey("checkpoints.id", ondelete="CASCADE"), primary_key=True
    )
    digest: Mapped[str] = mapped_column(String(DIGEST_LENGTH), primary_key=True)


class EventRow(Base):
    """One entry of the event log."""

    __tablename__ = "events"
    __table_args__ = (
        Index("ix_events_target_time", "target", "time"),
        {"sqlite_autoincrement": True},
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    time: Mapped[datetime]
    host: Mapped[str] = mapped_column(String(NAME_LENGTH))
    action: Mapped[str] = mapped_column(String(64))
    target: Mapped[str] = mapped_column(String(NAME_LENGTH))
    name: Mapped[str] = mapped_column(String(NAME_LENGTH))
    store_url: Mapped[str | None] = mapped_column(String(URL_LENGTH))
    detail: Mapped[dict[str, Any]]


class RetentionPolicyRow(Base):
    """The default retention policy of a target in a store (revision ``0002``).

    ``policy`` is :meth:`cryostash.retention.Policy.to_dict`; ``host`` and
    ``updated_at`` say who set it last, and when.
    """

    __tablename__ = "retention_policies"

    store_url: Mapped[str] = mapped_column(String(URL_LENGTH), primary_key=True)
    target: Mapped[str] = mapped_column(String(NAME_LENGTH), primary_key=True)
    policy: Mapped[dict[str, Any]]
    updated_at: Mapped[datetime]
    host: Mapped[str] = mapped_column(String(NAME_LENGTH))
