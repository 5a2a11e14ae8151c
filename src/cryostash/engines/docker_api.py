"""A minimal Docker Engine API client over the daemon's unix socket (standard library only).

Why not docker-py: it has no checkpoint API (and would be one more dependency).
Why not the ``docker`` CLI: re-creating a removed container exactly as it was needs
the configuration ``docker inspect`` reports sent back to ``POST /containers/create``,
which the CLI cannot do; and the CLI on a host need not match the daemon's version.

The socket is ``$DOCKER_HOST`` when it is ``unix://PATH``, else
``/var/run/docker.sock``. Other schemes (``tcp://``, ``ssh://``) are refused: the
docker engine writes checkpoints into, and reads them from, the daemon's own folders,
so the daemon must run on this host.
"""

from __future__ import annotations

import http.client
import json
import os
import socket
from collections.abc import Mapping
from typing import Any
from urllib.parse import quote, urlencode

from cryostash.errors import EngineError

DEFAULT_SOCKET = "/var/run/docker.sock"
QUICK_TIMEOUT_S = 60.0


def socket_path(env: Mapping[str, str] | None = None) -> str:
    """The daemon's socket path from ``DOCKER_HOST`` (``unix:///run/x.sock``) or the default.

    Raises:
        EngineError: ``DOCKER_HOST`` names something other than a unix socket.
    """
    env = os.environ if env is None else env
    host = env.get("DOCKER_HOST", "").strip()
    if not host:
        return DEFAULT_SOCKET
    if host.startswith("unix://") and len(host) > len("unix://"):
        return host[len("unix://") :]
    raise EngineError(
        f"DOCKER_HOST={host} is not a unix socket (unix:///PATH): the docker engine "
        "places checkpoints in the daemon's data root, so the daemon must run on this host"
    )


class UnixConnection(http.client.HTTPConnection):
    """HTTP/1.1 over the UNIX socket ``path`` (also the cryostash daemon's client's)."""

    def __init__(self, path: str, timeout: float | None) -> None:
        super().__init__("localhost", timeout=timeout)
        self._path = path

    def connect(self) -> None:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.settimeout(self.timeout)
        try:
            sock.connect(self._path)
        except OSError:
            sock.close()
            raise
        self.sock = sock


class ApiError(EngineError):
    """The daemon answered with an error status; ``status`` is the HTTP status."""

    def __init__(self, message: str, status: int) -> None:
        super().__init__(message)
        self.status = status


class DockerAPI:
    """Calls to one daemon. Each call opens its own connection (no state kept).

    Args:
        path: the daemon's unix socket.
    """

    def __init__(self, path: str) -> None:
        self.path = path

    def call(
        self,
        method: str,
        endpoint: str,
        *,
        query: Mapping[str, str] | None = None,
        body: Any = None,
        timeout: float | None = QUICK_TIMEOUT_S,
    ) -> Any:
        """``METHOD endpoint`` and the decoded JSON answer (None for an empty one).

        Raises:
            ApiError: the daemon answered 4xx/5xx (its ``message`` is the text).
            EngineError: the socket cannot be reached or the call timed out.
        """
        url = endpoint + (f"?{urlencode(query)}" if query else "")
        headers = {"Host": "docker"}
        payload = None
        if body is not None:
            payload = json.dumps(body).encode()
            headers["Content-Type"] = "application/json"
        conn = UnixConnection(self.path, timeout)
        try:
            conn.request(method, url, body=payload, headers=headers)
            response = conn.getresponse()
            raw = response.read()
        except (OSError, http.client.HTTPException) as exc:
            raise EngineError(f"cannot reach dockerd at {self.path}: {exc}") from exc
        finally:
            conn.close()
        text = raw.decode(errors="replace")
        if response.status >= 400:
            try:
                message = json.loads(text).get("message", text)
            except (ValueError, AttributeError):
                message = text
            raise ApiError(str(message).strip() or f"HTTP {response.status}", response.status)
        if not text.strip():
            return None
        try:
            return json.loads(text)
        except ValueError:
            return text

    def container(self, name: str) -> dict[str, Any] | None:
        """``GET /containers/NAME/json`` (``docker inspect``), or None when absent."""
        try:
            data = self.call("GET", f"/containers/{quote(name, safe='')}/json")
        except ApiError as exc:
            if exc.status == 404:
                return None
            raise
        return data if isinstance(data, dict) else None

    def info(self) -> dict[str, Any]:
        """``GET /info`` (``docker info``)."""
        data = self.call("GET", "/info")
        if not isinstance(data, dict):
            raise EngineError("dockerd answered /info with something that is not an object")
        return data

    def version(self) -> dict[str, Any]:
        """``GET /version``."""
        data = self.call("GET", "/version")
        return data if isinstance(data, dict) else {}
