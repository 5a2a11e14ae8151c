"""A throwaway PostgreSQL server for tests.

``CRYOSTASH_TEST_PG_URL`` (an admin SQLAlchemy URL, e.g.
``postgresql+psycopg://postgres@127.0.0.1:5432/postgres``) uses an existing server.
Otherwise a private cluster is created with the PostgreSQL binaries in
``CRYOSTASH_TEST_PG_BIN`` (default: the newest ``/usr/lib/postgresql/*/bin``): ``initdb`` into
a temporary folder (as the ``postgres`` user when running as root), ``pg_ctl
start`` on 127.0.0.1 and a free port, ``pg_ctl stop`` at the end of the session.
Each test gets a fresh database from :meth:`PostgresServer.create_database`.

When PostgreSQL is unavailable, :func:`tests.support.requirements.missing` skips
(or fails under CI).
"""

from __future__ import annotations

import atexit
import itertools
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

from tests.support.requirements import missing


def _default_bin() -> Path:
    """The newest ``/usr/lib/postgresql/<version>/bin`` with ``initdb`` (Debian 12 has 15,
    Debian 13 has 17), else version 15's folder (for the error message)."""
    found = [p.parent for p in Path("/usr/lib/postgresql").glob("*/bin/initdb")]
    versions = [p for p in found if p.parent.name.isdigit()]
    if versions:
        return max(versions, key=lambda p: int(p.parent.name))
    return Path("/usr/lib/postgresql/15/bin")


PG_BIN = Path(os.environ.get("CRYOSTASH_TEST_PG_BIN") or _default_bin())


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class PostgresServer:
    """A running PostgreSQL server on which tests create databases."""

    def __init__(self, admin_url: str, *, base: Path | None = None, user: str | None = None):
        self.admin_url = admin_url
        self._base = base
        self._user = user
        self._counter = itertools.count(1)
        self._stopped = False

    @classmethod
    def start(cls) -> PostgresServer:
        """initdb + pg_ctl start; raises RuntimeError (with the log) if it fails."""
        for tool in ("initdb", "pg_ctl"):
            if not (PG_BIN / tool).is_file():
                raise FileNotFoundError(f"{PG_BIN / tool} not found")
        try:
            import psycopg  # noqa: F401
        except ImportError as exc:
            raise FileNotFoundError(f"psycopg not installed: {exc}") from exc
        user = None
        if os.geteuid() == 0:  # initdb refuses to run as root
            user = "postgres"
            try:
                pwd.getpwnam(user)
            except KeyError:
                user = "nobody"
        base = Path(tempfile.mkdtemp(prefix="cryostash-pg-"))
        data = base / "data"
        if user is not None:
            entry = pwd.getpwnam(user)
            os.chown(base, entry.pw_uid, entry.pw_gid)
        port = _free_port()
        try:
            subprocess.run(
                [
                    str(PG_BIN / "initdb"),
                    "-D",
                    str(data),
                    "-U",
                    "postgres",
                    "--auth=trust",
                    "-E",
                    "UTF8",
                    "--locale=C",
                ],
                user=user,
                check=True,
                capture_output=True,
                text=True,
            )
            options = f"-p {port} -k {base} -c listen_addresses=127.0.0.1 -c fsync=off"
            subprocess.run(
                [
                    str(PG_BIN / "pg_ctl"),
                    "-D",
                    str(data),
                    "-l",
                    str(base / "log"),
                    "-w",
                    "-t",
                    "60",
                    "-o",
                    options,
                    "start",
                ],
                user=user,
                check=True,
                capture_output=True,
                text=True,
            )
        except subprocess.CalledProcessError as exc:
            log = (base / "log").read_text() if (base / "log").exists() else ""
            shutil.rmtree(base, ignore_errors=True)
            raise RuntimeError(f"{exc.cmd[0]} failed: {exc.stderr}{exc.stdout}{log}") from exc
        server = cls(
            f"postgresql+psycopg://postgres@127.0.0.1:{port}/postgres", base=base, user=user
        )
        atexit.register(server.stop)
        return server

    def create_database(self) -> str:
        """Create an empty database; return its SQLAlchemy URL."""
        from sqlalchemy import create_engine
        from sqlalchemy.engine import make_url

        name = f"cryostash_test_{os.getpid()}_{next(self._counter)}"
        engine = create_engine(self.admin_url, isolation_level="AUTOCOMMIT")
        try:
            with engine.connect() as conn:
                conn.exec_driver_sql(f'DROP DATABASE IF EXISTS "{name}"')
                conn.exec_driver_sql(f'CREATE DATABASE "{name}"')
        finally:
            engine.dispose()
        return make_url(self.admin_url).set(database=name).render_as_string(hide_password=False)

    def stop(self) -> None:
        """Stop a server this process started (no-op for an external one)."""
        if self._stopped or self._base is None:
            return
        self._stopped = True
        subprocess.run(
            [str(PG_BIN / "pg_ctl"), "-D", str(self._base / "data"), "-m", "immediate", "stop"],
            user=self._user,
            capture_output=True,
            check=False,
        )
        shutil.rmtree(self._base, ignore_errors=True)


_server: PostgresServer | None = None
_failure: str | None = None


def server() -> PostgresServer:
    """The session's server (started on first use), or skip/fail via ``missing``."""
    global _server, _failure
    if _server is None and _failure is None:
        external = os.environ.get("CRYOSTASH_TEST_PG_URL")
        try:
            _server = PostgresServer(external) if external else PostgresServer.start()
        except (OSError, RuntimeError) as exc:
            _failure = str(exc)
    if _server is None:
        missing("PostgreSQL", _failure or "unknown")
    return _server


def session_server() -> Iterator[PostgresServer]:
    """Body of a session-scoped fixture: yield the server, stop it at the end."""
    srv = server()
    yield srv
    srv.stop()
