"""The SQL catalog: checkpoint rows, blob references, events (SQLite or PostgreSQL).

Importing this package imports nothing heavy: :class:`Catalog` and the schema functions
(SQLAlchemy) load on first use of their names, so that the read path of a SQLite catalog
(:mod:`cryostash.catalog.reader`, the standard library's ``sqlite3``) never loads
SQLAlchemy. Alembic is imported only by the migration functions of
:mod:`cryostash.catalog.schema`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from cryostash.catalog.revisions import HEAD_REVISION
from cryostash.urls import canonical_url, redact_db_url, strip_credentials

if TYPE_CHECKING:
    from cryostash.catalog.catalog import Catalog
    from cryostash.catalog.schema import current, downgrade, migrations_dir, stamp, upgrade

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

_LAZY = {
    "Catalog": "cryostash.catalog.catalog",
    **{name: "cryostash.catalog.schema"
       for name in ("current", "downgrade", "migrations_dir", "stamp", "upgrade")},
}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'cryostash.catalog' has no attribute {name!r}")
