"""Schema revisions of the catalog: check, create, upgrade, downgrade.

The migrations are an Alembic script directory, the top-level ``migrations/``
folder of the source tree, shipped in the wheel as ``cryostash/migrations``
(see :func:`migrations_dir`).

Opening a :class:`~cryostash.catalog.Catalog` never migrates: it reads the
``alembic_version`` table with plain SQL and compares it with
:data:`HEAD_REVISION` (one ``SELECT`` when it matches; the tables are inspected only
otherwise). A database without any table is created at head
(``create_all`` of the models plus the version row, in one transaction; the
tests check that this equals running the migrations). Alembic itself is imported
only by :func:`upgrade`, :func:`downgrade`, :func:`stamp` and :func:`script_heads`,
which the ``cryostash db`` commands call and which work on outdated databases.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from sqlalchemy import Column, Engine, MetaData, PrimaryKeyConstraint, String, Table, inspect
from sqlalchemy.engine import URL, Connection
from sqlalchemy.exc import DBAPIError

from cryostash.catalog.database import (
    WRITE,
    catalog_exists,
    create_catalog_engine,
    translate_errors,
)
from cryostash.catalog.models import Base
from cryostash.catalog.revisions import HEAD_REVISION as HEAD_REVISION
from cryostash.catalog.revisions import KNOWN_REVISIONS as KNOWN_REVISIONS
from cryostash.catalog.revisions import VERSION_TABLE as VERSION_TABLE
from cryostash.errors import CatalogError, SchemaOutdated
from cryostash.urls import redact_db_url

if TYPE_CHECKING:
    from alembic.config import Config

#: Shown for a database whose version table is empty (everything downgraded).
BASE = "base"

_version_metadata = MetaData()
#: The table Alembic keeps its revision in (same definition as Alembic's own).
version_table = Table(
    VERSION_TABLE,
    _version_metadata,
    Column("version_num", String(32), nullable=False),
    PrimaryKeyConstraint("version_num", name="alembic_version_pkc"),
)
#: Key of the PostgreSQL advisory lock that serialises schema creation and migrations.
_PG_LOCK_KEY = 0x6372796F  # "cryo"


def migrations_dir() -> Path:
    """The Alembic script directory.

    Installed wheel: ``<site-packages>/cryostash/migrations`` (hatch force-include).
    Source checkout or editable install: ``<repo>/migrations`` (two levels above the
    package, which lives in ``<repo>/src/cryostash``).
    """
    package = Path(__file__).resolve().parent.parent  # src/cryostash (catalog's parent)
    candidates = (package / "migrations", package.parent.parent / "migrations")
    for candidate in candidates:
        if (candidate / "env.py").is_file():
            return candidate
    looked = ", ".join(str(c) for c in candidates)
    raise CatalogError(f"cannot find the catalog migrations (looked in {looked})")


def alembic_config(connection: Connection | None = None, url: str | None = None) -> Config:
    """An Alembic ``Config`` built in code (no ``alembic.ini``).

    ``migrations/env.py`` uses ``connection`` when given (``config.attributes``),
    else it connects to ``url`` itself (``sqlalchemy.url``).
    """
    from alembic.config import Config

    config = Config()
    config.set_main_option("script_location", str(migrations_dir()).replace("%", "%%"))
    if url is not None:
        config.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    if connection is not None:
        config.attributes["connection"] = connection
    return config


def script_heads() -> list[str]:
    """The head revisions of the migration scripts (imports Alembic)."""
    from alembic.script import ScriptDirectory

    return list(ScriptDirectory.from_config(alembic_config()).get_heads())


def lock_for_schema_change(conn: Connection) -> None:
    """Serialise schema changes between processes (PostgreSQL advisory lock).

    On SQLite the ``BEGIN IMMEDIATE`` of a write connection already does it.
    """
    if conn.dialect.name == "postgresql":
        conn.exec_driver_sql(f"SELECT pg_advisory_xact_lock({_PG_LOCK_KEY})")


@dataclass(frozen=True)
class SchemaState:
    """What a database holds: the version table (and its revision), our tables."""

    has_version_table: bool
    revision: str | None
    has_catalog_tables: bool

    @property
    def is_empty(self) -> bool:
        """True when nothing of cryostash is there yet: create at head."""
        return not self.has_version_table and not self.has_catalog_tables


def read_state(conn: Connection) -> SchemaState:
    """Read the schema state with plain SQL (no Alembic)."""
    inspector = inspect(conn)
    names = set(inspector.get_table_names())
    has_ours = bool(names & set(Base.metadata.tables))
    if VERSION_TABLE not in names:
        return SchemaState(False, None, has_ours)
    revisions = sorted(conn.execute(version_table.select()).scalars())
    return SchemaState(True, ",".join(revisions) or None, has_ours)


def _at_head(conn: Connection) -> bool:
    """True when the version table holds exactly :data:`HEAD_REVISION`; False when it
    holds anything else or is missing (the transaction is then unusable: roll it back)."""
    try:
        rows = conn.exec_driver_sql(f"SELECT version_num FROM {VERSION_TABLE}").all()
    except DBAPIError:
        return False
    return [tuple(row) for row in rows] == [(HEAD_REVISION,)]


def _create_at_head(conn: Connection) -> None:
    Base.metadata.create_all(conn)
    version_table.create(conn, checkfirst=True)
    conn.execute(version_table.delete())
    conn.execute(version_table.insert().values(version_num=HEAD_REVISION))


def check_state(state: SchemaState, shown_url: str) -> None:
    """Raise unless ``state`` is exactly :data:`HEAD_REVISION`."""
    if not state.has_version_table:
        raise CatalogError(
            f"catalog {shown_url} has cryostash tables but no {VERSION_TABLE} table, "
            "so its schema revision is unknown; it was not created by cryostash"
        )
    revision = state.revision or BASE
    if revision == HEAD_REVISION:
        return
    if revision == BASE or revision in KNOWN_REVISIONS:
        raise SchemaOutdated(
            f"catalog {shown_url} is at schema revision {revision}, this cryostash needs "
            f"{HEAD_REVISION}: run `cryostash db upgrade`"
        )
    raise SchemaOutdated(
        f"catalog {shown_url} is at schema revision {revision}, unknown to this cryostash, "
        f"which needs {HEAD_REVISION}: this cryostash is older than the catalog; "
        "upgrade cryostash"
    )


def ensure_schema(engine: Engine) -> None:
    """Create an empty database at head; otherwise check it is at head.

    Safe when several processes open a new database at once: creation happens in
    one write transaction (SQLite ``BEGIN IMMEDIATE``, PostgreSQL advisory lock)
    that re-reads the state first.

    Raises:
        SchemaOutdated: older or unknown revision.
        CatalogError: the database holds cryostash tables without a revision.
    """
    shown = redact_db_url(engine.url)
    with engine.connect() as conn, conn.begin():
        if _at_head(conn):  # the usual case: one SELECT, no schema inspection
            return
    with engine.connect() as conn, conn.begin():
        state = read_state(conn)
    if state.is_empty:
        with engine.connect() as conn:
            conn.execution_options(**{WRITE: True})
            with conn.begin():
                lock_for_schema_change(conn)
                state = read_state(conn)
                if state.is_empty:
                    _create_at_head(conn)
                    return
    check_state(state, shown)


def current(url: str | URL) -> str | None:
    """The revision the catalog database is at; None for an empty database or a SQLite
    file that does not exist (never created here).

    Reads ``alembic_version`` with plain SQL; never refuses an outdated database.
    """
    if not catalog_exists(url):
        return None
    engine = create_catalog_engine(url, create=False)
    try:
        with translate_errors(url), engine.connect() as conn, conn.begin():
            return read_state(conn).revision
    finally:
        engine.dispose()


def _run_alembic(url: str | URL, action: str, revision: str) -> None:
    from alembic import command
    from alembic.util import CommandError

    engine = create_catalog_engine(url, foreign_keys=False)
    try:
        with translate_errors(url), engine.connect() as conn:
            conn.execution_options(**{WRITE: True})
            with conn.begin():
                lock_for_schema_change(conn)
                config = alembic_config(conn)
                try:
                    getattr(command, action)(config, revision)
                except CommandError as exc:
                    raise CatalogError(
                        f"catalog {redact_db_url(url)}: cannot {action} to {revision}: {exc}"
                    ) from exc
    finally:
        engine.dispose()


def upgrade(url: str | URL, revision: str = "head") -> None:
    """Migrate the catalog up to ``revision`` (default head); creates an empty database.

    All steps run in one transaction (also on SQLite): all or nothing.
    """
    _run_alembic(url, "upgrade", revision)


def downgrade(url: str | URL, revision: str) -> None:
    """Migrate the catalog down to ``revision`` (``base`` drops every table)."""
    _run_alembic(url, "downgrade", revision)


def stamp(url: str | URL, revision: str) -> None:
    """Record ``revision`` in ``alembic_version`` without running any migration."""
    _run_alembic(url, "stamp", revision)
