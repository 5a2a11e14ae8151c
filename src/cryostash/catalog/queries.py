"""The SELECT of committed checkpoint rows that a :class:`~cryostash.types.CheckpointFilter`
chooses (labels, host, since), for ``ls``, ``--latest`` and ``names``: one query, the
label test written for the catalog's SQL dialect.
"""

from __future__ import annotations

from sqlalchemy import ColumnElement, Select, func, literal, select

from cryostash.catalog.models import CheckpointRow
from cryostash.types import CheckpointFilter, Status
from cryostash.urls import canonical_url


def committed(
    dialect: str, store_url: str | None, target: str | None, filters: CheckpointFilter | None
) -> Select[CheckpointRow]:
    """SELECT of the COMMITTED rows of a store (None: all), a target, and ``filters``."""
    query = select(CheckpointRow).where(CheckpointRow.status == Status.COMMITTED.value)
    if store_url is not None:
        query = query.where(CheckpointRow.store_url == canonical_url(store_url))
    if target is not None:
        query = query.where(CheckpointRow.target == target)
    if filters is None:
        return query
    for key, value in sorted(filters.labels.items()):
        query = query.where(label_is(dialect, key, value))
    if filters.host is not None:
        query = query.where(CheckpointRow.host == filters.host)
    if filters.since is not None:
        query = query.where(CheckpointRow.created_at >= filters.since)
    return query


def label_is(dialect: str, key: str, value: str) -> ColumnElement[bool]:
    """``labels[key] == value`` (the key any text). PostgreSQL: ``labels ->> :key``.
    SQLite: its JSON paths cannot quote every key (``"`` in a key), so the label is
    looked up with ``json_each`` instead, key and value as bound parameters."""
    if dialect == "sqlite":
        each = func.json_each(CheckpointRow.labels).table_valued("key", "value")
        return (
            select(literal(1))
            .select_from(each)
            .where(each.c.key == key, each.c.value == value)
            .exists()
        )
    clause: ColumnElement[bool] = CheckpointRow.labels[key].as_string() == value
    return clause
