"""The SQL catalog: checkpoint rows, blob references, events (SQLite or PostgreSQL).

Importing this package imports SQLAlchemy but never Alembic; Alembic is imported
only by the migration functions of :mod:`cryostash.catalog.schema`.
"""

from __future__ import annotations

from cryostash.catalog.catalog import Catalog
from cryostash.catalog.schema import (
    HEAD_REVISION,
    current,
    downgrade,
    migrations_dir,
    stamp,
    upgrade,
)
from cryostash.urls import canonical_url, redact_db_url, strip_credentials

__all__ = [
    "HEAD_REVISION",
    "Catalog",
    "canonical_url",
    "current",
    "downgrade",
    "migrations_dir",
    "redact_db_url",
    "stamp",
    "strip_credentials",
    "upgrade",
]
