"""The catalog's database: SQLAlchemy engine creation (SQLite pragmas, transaction control)
and error translation.

SQLite: every connection gets ``journal_mode=WAL``, ``busy_timeout`` (30 s) and
``foreign_keys=ON``. The ``sqlite3`` driver's own (legacy) transaction handling is
switched off and SQLAlchemy emits ``BEGIN`` itself: plain ``BEGIN`` for reads,
``BEGIN IMMEDIATE`` for connections marked with the :data:`WRITE` execution
option. A write transaction therefore takes SQLite's write lock up front and waits
(up to the busy timeout) for it, instead of failing with "database is locked" when
a deferred read lock cannot be upgraded; writers are serialised, readers are not
blocked (WAL). This also makes DDL transactional (migrations apply all or nothing).

PostgreSQL: connections are pre-pinged; transactions run at READ COMMITTED and
the catalog takes row locks where it needs them. Connecting gives up after
:data:`DEFAULT_CONNECT_TIMEOUT_S` unless the URL's query sets ``connect_timeout`` (the
settings add one for ``CRYOSTASH_CATALOG_TIMEOUT``): a host that accepts the connection
but never answers fails with a :class:`CatalogError` naming the catalog, never hangs.

URLs: ``sqlite:///PATH`` and ``postgresql[+driver]://...`` only; anything else is a
:class:`UsageError` (exit 2) naming the supported schemes.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Concatenate, ParamSpec, Protocol, TypeVar

from sqlalchemy import Engine, create_engine, event
from sqlalchemy.engine import URL, Connection, make_url
from sqlalchemy.exc import (
    ArgumentError,
    DBAPIError,
    IntegrityError,
    NoSuchModuleError,
    SQLAlchemyError,
)

from cryostash.errors import CatalogError, CatalogNotFound, CryostashError, UsageError
from cryostash.redact import redact_text
from cryostash.urls import redact_db_url, sqlite_file

#: How long a SQLite connection waits for a lock before giving up (seconds).
SQLITE_BUSY_TIMEOUT_S = 30.0
#: How long connecting to a PostgreSQL catalog may take (seconds) when its URL sets no
#: ``connect_timeout``.
DEFAULT_CONNECT_TIMEOUT_S = 10
#: Execution option marking a connection whose transactions will write.
WRITE = "cryostash_write"
#: The database schemes a catalog URL may name.
SUPPORTED_SCHEMES = ("sqlite", "postgresql")


def parse_url(url: str | URL) -> URL:
    """Parse a catalog URL.

    Raises:
        UsageError: not a URL (``unsupported catalog URL ...``), or a scheme other than
            :data:`SUPPORTED_SCHEMES` (``unsupported catalog URL scheme mysql; supported:
            sqlite, postgresql``); the password is never shown.
    """
    try:
        parsed = make_url(url)
    except (ArgumentError, ValueError) as exc:
        raise UsageError(
            f"unsupported catalog URL {redact_db_url(url)}: expected sqlite:////PATH/catalog.db "
            "or postgresql+psycopg://USER@HOST/DB"
        ) from exc
    scheme = parsed.get_backend_name()
    if scheme not in SUPPORTED_SCHEMES:
        raise UsageError(
            f"unsupported catalog URL scheme {scheme}; supported: "
            + ", ".join(SUPPORTED_SCHEMES)
        )
    return parsed


def catalog_exists(url: str | URL) -> bool:
    """False only for a SQLite catalog with nothing at its path (a database server's
    catalog is never known missing without connecting). A symbolic link there, even one
    to nothing, counts as something: opening it is refused with its own reason."""
    path = sqlite_file(str(url) if isinstance(url, str) else url.render_as_string(False))
    return path is None or path.expanduser().is_file() or path.expanduser().is_symlink()


def create_catalog_engine(
    url: str | URL, *, foreign_keys: bool = True, create: bool = True
) -> Engine:
    """Create the engine for a catalog URL (nothing is connected yet).

    Args:
        url: SQLAlchemy URL (``sqlite:///...``, ``postgresql+psycopg://...``).
        foreign_keys: SQLite only; migrations turn it off, because a batch ALTER
            recreates tables and would otherwise cascade deletes.
        create: a SQLite file that does not exist is created (and its folder);
            otherwise it is refused with :class:`CatalogNotFound`.

    Raises:
        UsageError: bad or unsupported URL.
        CatalogNotFound: ``create`` is False and the SQLite file does not exist.
        CatalogError: missing database driver.
    """
    sa_url = parse_url(url)
    backend = sa_url.get_backend_name()
    if not create and not catalog_exists(url):
        raise CatalogNotFound(
            f"catalog {redact_db_url(sa_url)} does not exist (the first `cryostash create` "
            "or `cryostash db upgrade` creates it)"
        )
    kwargs: dict[str, Any] = {}
    if backend == "sqlite":
        kwargs["connect_args"] = {"timeout": SQLITE_BUSY_TIMEOUT_S}
        database = sa_url.database
        if database and database != ":memory:" and not database.startswith("file:"):
            try:
                Path(database).expanduser().parent.mkdir(
                    parents=True, exist_ok=True, mode=0o700
                )
            except OSError as exc:
                raise CatalogError(
                    f"catalog {redact_db_url(sa_url)}: cannot create its folder: {exc}"
                ) from exc
    else:
        kwargs["pool_pre_ping"] = True
        if "connect_timeout" not in sa_url.query:
            kwargs["connect_args"] = {"connect_timeout": DEFAULT_CONNECT_TIMEOUT_S}
    try:
        engine = create_engine(sa_url, **kwargs)
    except NoSuchModuleError as exc:
        raise UsageError(
            f"unsupported catalog URL {redact_db_url(sa_url)}: unknown driver "
            f"{sa_url.drivername!r} (use sqlite:/// or postgresql+psycopg://)"
        ) from exc
    except ImportError as exc:
        hint = " (pip install 'cryostash[postgres]')" if backend == "postgresql" else ""
        raise CatalogError(
            f"catalog {redact_db_url(sa_url)}: database driver not available: {exc}{hint}"
        ) from exc
    except ArgumentError as exc:
        raise UsageError(f"invalid catalog URL {redact_db_url(sa_url)}: {exc}") from exc
    if backend == "sqlite":
        _install_sqlite_hooks(engine, foreign_keys=foreign_keys)
        database = sa_url.database
        if database and database != ":memory:" and not database.startswith("file:"):
            try:
                _private_sqlite_file(Path(database).expanduser())
            except OSError as exc:
                raise CatalogError(
                    f"catalog {redact_db_url(sa_url)}: cannot create its file: {exc}"
                ) from exc
    return engine


def _private_sqlite_file(path: Path) -> None:
    """Create the SQLite database file ``path`` owner-only (0600) if it does not exist,
    so that SQLite, which gives its ``-wal`` and ``-shm`` files the database's mode,
    never makes a catalog others can read. An existing file is left as it is
    (``cryostash doctor`` warns when others can read it), also through a symbolic link;
    a symbolic link to nothing is refused (SQLite would create the file it points at).

    Raises:
        OSError: the folder or the file cannot be created; ``path`` is a dangling
            symbolic link.
    """
    import errno
    import os

    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
    except FileExistsError:
        if path.is_symlink() and not path.exists():
            raise OSError(
                errno.ELOOP, "it is a symbolic link to nothing: a catalog is not created "
                "through a link"
            ) from None
        return
    os.close(fd)


def _install_sqlite_hooks(engine: Engine, *, foreign_keys: bool) -> None:
    busy_ms = int(SQLITE_BUSY_TIMEOUT_S * 1000)

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        dbapi_connection.isolation_level = None  # we emit BEGIN ourselves (below)
        cursor = dbapi_connection.cursor()
        try:
            cursor.execute(f"PRAGMA busy_timeout = {busy_ms}")
            cursor.execute("PRAGMA journal_mode = WAL")
            cursor.execute(f"PRAGMA foreign_keys = {'ON' if foreign_keys else 'OFF'}")
        finally:
            cursor.close()

    @event.listens_for(engine, "begin")
    def _on_begin(conn: Connection) -> None:
        write = bool(conn.get_execution_options().get(WRITE))
        conn.exec_driver_sql("BEGIN IMMEDIATE" if write else "BEGIN")


def _reason(exc: BaseException, password: str | None) -> str:
    text = str(exc.orig) if isinstance(exc, DBAPIError) and exc.orig is not None else str(exc)
    text = " ".join(text.split()) or type(exc).__name__
    if password:
        text = text.replace(password, "***")
    if "timeout expired" in text or "timed out" in text:
        text += (
            " (the catalog did not answer in time; the limit is connect_timeout in the "
            f"catalog URL, else CRYOSTASH_CATALOG_TIMEOUT, else {DEFAULT_CONNECT_TIMEOUT_S}s)"
        )
    return redact_text(text)


@contextmanager
def translate_errors(url: str | URL) -> Iterator[None]:
    """Turn database errors into :class:`CatalogError` naming the catalog (no password).

    Errors of cryostash itself pass through unchanged. This is the one place where
    SQLAlchemy (and driver) exceptions are translated.
    """
    try:
        yield
    except CryostashError:
        raise
    except SQLAlchemyError as exc:
        try:
            password = make_url(url).password
        except Exception:
            password = None
        raise CatalogError(
            f"catalog {redact_db_url(url)}: {_reason(exc, str(password) if password else None)}"
        ) from exc


#: PostgreSQL SQLSTATEs after which the whole transaction may simply be run again.
_RETRY_SQLSTATES = frozenset({"40P01", "40001"})  # deadlock_detected, serialization_failure
_ATTEMPTS = 3


class _HasUrl(Protocol):
    _url: str


S = TypeVar("S", bound=_HasUrl)
P = ParamSpec("P")
R = TypeVar("R")


def translated(method: Callable[Concatenate[S, P], R]) -> Callable[Concatenate[S, P], R]:
    """Run ``method`` (one transaction) with database errors translated to CatalogError.

    A transaction that PostgreSQL aborted for a deadlock or a serialisation failure
    is retried (it was rolled back entirely).
    """

    @functools.wraps(method)
    def wrapper(self: S, /, *args: P.args, **kwargs: P.kwargs) -> R:
        with translate_errors(self._url):
            for attempt in range(1, _ATTEMPTS + 1):
                try:
                    return method(self, *args, **kwargs)
                except DBAPIError as exc:
                    sqlstate = getattr(exc.orig, "sqlstate", None)
                    if sqlstate not in _RETRY_SQLSTATES or attempt == _ATTEMPTS:
                        raise
            raise AssertionError("unreachable")

    return wrapper


def is_unique_violation(exc: IntegrityError) -> bool:
    """True when ``exc`` is a unique-key violation (PostgreSQL or SQLite)."""
    orig = exc.orig
    if getattr(orig, "sqlstate", None) == "23505":  # PostgreSQL unique_violation
        return True
    return "UNIQUE constraint failed" in str(orig)  # SQLite
