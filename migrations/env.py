"""Alembic environment of the cryostash catalog.

The Config is built in code by :func:`cryostash.catalog.schema.alembic_config`
(no ``alembic.ini``): ``script_location`` is this folder, and either an open
connection is passed in ``config.attributes["connection"]`` (what ``cryostash db
upgrade`` does), or ``sqlalchemy.url`` names the database.

New revision (developers), from the repository root::

    python -c "from alembic import command; from cryostash.catalog.schema import \\
    alembic_config as c; command.revision(c(url='sqlite:////tmp/head.db'), \\
    message='what changed', autogenerate=True, rev_id='0002')"

against a database at head (autogenerate compares it with the models), then
update ``HEAD_REVISION`` and ``KNOWN_REVISIONS`` in ``cryostash/catalog/schema.py``.
"""

from __future__ import annotations

from alembic import context
from sqlalchemy.engine import Connection

from cryostash.catalog.database import WRITE, create_catalog_engine
from cryostash.catalog.models import Base

config = context.config
target_metadata = Base.metadata


def _configure(connection: Connection) -> None:
    context.configure(
        connection=connection,
        target_metadata=target_metadata,
        render_as_batch=True,  # SQLite cannot ALTER most things: recreate the table
        compare_type=True,
    )
    with context.begin_transaction():
        context.run_migrations()


def run_offline() -> None:
    """Emit SQL instead of running it (``--sql``)."""
    context.configure(
        url=config.get_main_option("sqlalchemy.url"),
        target_metadata=target_metadata,
        literal_binds=True,
        render_as_batch=True,
        dialect_opts={"paramstyle": "named"},
    )
    with context.begin_transaction():
        context.run_migrations()


def run_online() -> None:
    """Run the migrations on the given connection, or connect to ``sqlalchemy.url``."""
    connection = config.attributes.get("connection")
    if connection is not None:
        _configure(connection)
        return
    url = config.get_main_option("sqlalchemy.url")
    if not url:
        raise RuntimeError("no connection and no sqlalchemy.url in the Alembic config")
    engine = create_catalog_engine(url, foreign_keys=False)
    try:
        with engine.connect() as conn:
            conn.execution_options(**{WRITE: True})
            _configure(conn)
            if conn.in_transaction():
                conn.commit()
    finally:
        engine.dispose()


if context.is_offline_mode():
    run_offline()
else:
    run_online()
