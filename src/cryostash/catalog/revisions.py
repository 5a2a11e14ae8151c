"""The schema revisions this cryostash knows, without SQLAlchemy (the read path of
:mod:`cryostash.catalog.reader` checks them with ``sqlite3``)."""

#: The revision this cryostash needs (the head of ``migrations/versions``).
HEAD_REVISION = "0003"
#: Every revision this cryostash knows, oldest first (must match the migrations).
KNOWN_REVISIONS: tuple[str, ...] = ("0001", "0002", "0003")
#: The table Alembic keeps its revision in.
VERSION_TABLE = "alembic_version"

#: What ``doctor`` and ``db current`` both say of a catalog that has no schema yet.
NOT_CREATED_NOTE = (
    f"no catalog yet: the first write or `cryostash db upgrade` creates it at {HEAD_REVISION}"
)
