"""A real ``cryostash daemon`` for the daemon tests: a subprocess on a socket of its own
in a test's folder, with the test's store, catalog and scratch; stopped by PID (SIGTERM,
then its exit code is checked by the test that stops it, or the rig kills it).

Every wait is on a condition with a deadline (the socket answering ``/healthz``).
"""

from __future__ import annotations

import contextlib
import http.client
import os
import signal
import socket as socketlib
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from prometheus_client.parser import text_string_to_metric_families

from cryostash.daemon import client
from tests.support.cli import host_env
from tests.support.processes import wait_until

SUPPORT = Path(__file__).resolve().parent


def daemon_env(home: Path, criu_path: str) -> dict[str, str]:
    """The environment of a daemon (and of a CLI) using ``home``'s store and catalog."""
    return host_env(home, criu=criu_path)


class Daemon:
    """A running daemon: its process, socket and stderr (JSON-line logs)."""

    def __init__(self, proc: subprocess.Popen[bytes], socket: Path, stderr: Path) -> None:
        self.proc = proc
        self.socket = socket
        self.stderr = stderr

    @property
    def pid(self) -> int:
        return self.proc.pid

    @property
    def home(self) -> Path:
        """The data folder it serves (store, catalog, scratch: ``cli.host_env``)."""
        return self.stderr.parent

    def logs(self) -> str:
        return self.stderr.read_text(errors="replace")

    def request(self, method: str, path: str, body: object = None, **kw: Any) -> tuple[int, Any]:
        """``method path`` on the daemon: its status and JSON reply."""
        return client.request(method, path, body, socket_path=self.socket, **kw)

    def verb(self, verb: str, **fields: Any) -> tuple[int, Any]:
        """``POST /v1/verbs/VERB`` with ``fields``: status and JSON reply."""
        return self.request("POST", f"/v1/verbs/{verb}", fields)

    def ok(self, verb: str, **fields: Any) -> Any:
        """The result of ``verb``; fails the test unless the daemon answered 200."""
        status, data = self.verb(verb, **fields)
        assert status == 200, f"{verb} answered {status}: {data}"
        return data

    def raw(
        self,
        method: str,
        path: str,
        body: bytes | None = None,
        headers: dict[str, str] | None = None,
    ) -> tuple[int, dict[str, str], bytes]:
        """``method path`` as any HTTP client sends it (no version header unless given):
        status, headers, body."""
        conn = http.client.HTTPConnection("localhost", timeout=30)
        sock = socketlib.socket(socketlib.AF_UNIX, socketlib.SOCK_STREAM)
        sock.connect(str(self.socket))
        conn.sock = sock
        try:
            conn.request(method, path, body=body, headers=headers or {})
            reply = conn.getresponse()
            return reply.status, dict(reply.getheaders()), reply.read()
        finally:
            conn.close()

    def metrics(self) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
        """``/metrics`` parsed with prometheus_client's parser: (sample, labels) -> value."""
        status, _, body = self.raw("GET", "/metrics")
        assert status == 200
        text = body.decode()
        return {
            (s.name, tuple(sorted(s.labels.items()))): s.value
            for family in text_string_to_metric_families(text)
            for s in family.samples
        }

    def answers(self) -> bool:
        try:
            return self.request("GET", "/healthz", timeout=2.0)[0] == 200
        except Exception:
            return False

    def terminate(self, timeout: float = 60.0) -> int:
        """SIGTERM by PID; its exit code once it has exited."""
        os.kill(self.proc.pid, signal.SIGTERM)
        return self.proc.wait(timeout)

    def kill(self) -> None:
        """SIGKILL by PID if still running (a test's clean-up)."""
        if self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGKILL)
            self.proc.wait(30)


def start(
    home: Path,
    criu_path: str,
    *args: str,
    socket: Path | None = None,
    pause: tuple[str, Path, Path] | None = None,
    timeout: float = 60.0,
) -> Daemon:
    """Start ``cryostash daemon --socket SOCKET ARGS`` on ``home``'s store and catalog and
    wait until it answers; with ``pause`` (phase, ready file, go file) creates pause at
    that phase (:mod:`tests.support.daemon_pause`)."""
    home.mkdir(parents=True, exist_ok=True)
    sock = socket or home / "run" / "cs.sock"
    stderr = home / f"daemon-{len(list(home.glob('daemon-*.log')))}.log"
    prefix = [sys.executable, "-m", "cryostash"]
    if pause is not None:
        prefix = [sys.executable, str(SUPPORT / "daemon_pause.py"), pause[0], str(pause[1]),
                  str(pause[2])]
    with stderr.open("wb") as err:
        proc = subprocess.Popen(
            [*prefix, "daemon", "--socket", str(sock), *args],
            env=daemon_env(home, criu_path), stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL, stderr=err,
        )
    daemon = Daemon(proc, sock, stderr)
    try:
        wait_until(
            lambda: daemon.answers() or proc.poll() is not None, timeout, f"daemon on {sock}"
        )
        assert proc.poll() is None, f"the daemon exited {proc.returncode}: {daemon.logs()}"
    except BaseException:
        daemon.kill()
        raise
    return daemon


def reset_home(home: Path) -> None:
    """Empty the store, scratch folder and catalog rows of a running daemon's ``home``
    behind its back (between tests sharing one daemon); the catalog's schema stays."""
    import shutil
    import sqlite3

    for folder in ("store", "scratch", "elsewhere", "plain-file"):
        path = home / folder
        if path.is_dir():
            shutil.rmtree(path)
        elif path.exists():
            path.unlink()
    (home / "store").mkdir(mode=0o700)  # the daemon made its store at start: empty, there
    with contextlib.closing(sqlite3.connect(home / "catalog.db")) as db, db:
        for table in ("checkpoint_blobs", "blobs", "events", "retention_policies",
                      "checkpoints"):
            db.execute(f"DELETE FROM {table}")


def catalog_counts(home: Path) -> dict[str, int]:
    """The rows of ``home``'s catalog's ``checkpoints`` and ``events`` tables."""
    import sqlite3

    with contextlib.closing(sqlite3.connect(home / "catalog.db")) as db:
        return {
            table: db.execute(f"SELECT COUNT(*) FROM {table}").fetchone()[0]
            for table in ("checkpoints", "events")
        }


@contextlib.contextmanager
def running(home: Path, criu_path: str, *args: str, **kw: Any) -> Iterator[Daemon]:
    """A daemon for the block; stopped by SIGTERM after it (exit 0 and socket gone
    asserted), or killed if the block failed or the test stopped it already."""
    daemon = start(home, criu_path, *args, **kw)
    try:
        yield daemon
    except BaseException:
        daemon.kill()
        raise
    if daemon.proc.poll() is None:
        code = daemon.terminate()
        assert code == 0, f"the daemon exited {code}: {daemon.logs()}"
        assert not daemon.socket.exists(), "the daemon left its socket behind"
