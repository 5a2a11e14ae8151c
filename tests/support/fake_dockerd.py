"""A stand-in for dockerd's Engine API on a unix socket, for tests that must show what
cryostash sends (or does not send) before a container would be created. It knows no
container (``GET /containers/NAME/json``: 404), answers ``/info`` and ``/version``, and
records every request; anything else gets a 500. Served by a thread of the test process,
stopped by the context manager."""

from __future__ import annotations

import contextlib
import json
import socketserver
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler
from pathlib import Path
from typing import Any


@dataclass
class FakeDockerd:
    """The socket to point ``DOCKER_HOST`` at, and the requests it got (method, path)."""

    socket: Path
    root: Path
    requests: list[tuple[str, str]] = field(default_factory=list)

    @property
    def docker_host(self) -> str:
        return f"unix://{self.socket}"


def _handler(daemon: FakeDockerd) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def _answer(self, status: int, body: Any) -> None:
            data = json.dumps(body).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def _serve(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            if length:
                self.rfile.read(length)
            path = self.path.split("?", 1)[0]
            daemon.requests.append((self.command, path))
            if path == "/info":
                self._answer(200, {"DockerRootDir": str(daemon.root), "ExperimentalBuild": True})
            elif path == "/version":
                self._answer(200, {"Version": "0-fake"})
            elif self.command == "GET" and path.startswith("/containers/"):
                self._answer(404, {"message": "No such container"})
            else:
                self._answer(500, {"message": f"the fake dockerd does not do {path}"})

        do_GET = do_POST = do_DELETE = _serve

        def address_string(self) -> str:
            return "fake-dockerd"

        def log_message(self, format: str, *args: Any) -> None:
            pass

    return Handler


@contextlib.contextmanager
def fake_dockerd(folder: Path) -> Iterator[FakeDockerd]:
    """A :class:`FakeDockerd` serving on ``folder/docker.sock`` until the block ends."""
    (folder / "root").mkdir(parents=True, exist_ok=True)
    daemon = FakeDockerd(folder / "docker.sock", folder / "root")
    server = socketserver.ThreadingUnixStreamServer(str(daemon.socket), _handler(daemon))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield daemon
    finally:
        server.shutdown()
        server.server_close()
        thread.join(10)
