"""A client of the daemon's ``/v1`` API over its UNIX socket, with the standard library
only (``http.client``, through :class:`~cryostash.engines.docker_api.UnixConnection`):
what ``cryostash daemon status`` uses, and what the command line uses as a thin client
(:mod:`cryostash.cli.daemon_route`).

Every request says the client's version (header ``Cryostash-Version``); a daemon of
another version refuses it, and a reply from a daemon of another version is refused
here: both raise :class:`~cryostash.errors.DaemonError` naming the two versions.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from cryostash import __version__
from cryostash.daemon.config import DEFAULT_SOCKET, VERSION_HEADER
from cryostash.engines.docker_api import UnixConnection
from cryostash.errors import CryostashError, DaemonError, error_class


def request(
    method: str,
    path: str,
    body: object = None,
    *,
    socket_path: Path = DEFAULT_SOCKET,
    timeout: float = 3600.0,
    version: str = __version__,
) -> tuple[int, Any]:
    """Send ``method path`` (``body`` as JSON) to the daemon; its status and JSON reply.

    Raises:
        DaemonError: nothing answers at ``socket_path``, the reply is not JSON, or the
            daemon is of another version.
    """
    conn = UnixConnection(str(socket_path), timeout)
    payload = None if body is None else json.dumps(body).encode()
    headers = {VERSION_HEADER: version, "Content-Type": "application/json"}
    try:
        conn.request(method, path, body=payload, headers=headers)
        reply = conn.getresponse()
        raw = reply.read()
        theirs = reply.getheader(VERSION_HEADER)
    except OSError as exc:
        raise DaemonError(
            f"no cryostash daemon answers on {socket_path}: {exc.strerror or exc} "
            "(start one with `cryostash daemon`)"
        ) from None
    finally:
        conn.close()
    try:
        data = json.loads(raw) if raw else None
    except ValueError:
        raise DaemonError(f"{socket_path} answered something that is not JSON") from None
    if reply.status == 400 and isinstance(data, dict) and data.get("kind") == "DaemonError":
        raise DaemonError(str(data.get("message")))
    if theirs is None:
        raise DaemonError(f"{socket_path} does not answer as a cryostash daemon")
    if theirs != version:
        raise DaemonError(
            f"cryostash {version} (client) and the daemon (cryostash {theirs}) differ: use "
            "the same version on both sides (restart the daemon after an upgrade)"
        )
    return reply.status, data


def call(
    verb: str, fields: dict[str, Any], *, socket_path: Path = DEFAULT_SOCKET,
    lossless: bool = False,
) -> Any:
    """Run ``verb`` with the request ``fields`` on the daemon; its result (JSON data:
    with ``lossless``, its dataclass fields, ``?form=fields``, for
    :func:`cryostash.daemon.codec.decode_result`).

    Raises:
        CryostashError: the operation's error, of the class its exit code names, with
            its message (several lines kept when the daemon says so); DaemonError as
            :func:`request`.
    """
    path = f"/v1/verbs/{verb}" + ("?form=fields" if lossless else "")
    status, data = request("POST", path, fields, socket_path=socket_path)
    if status == 200:
        return data
    error = error_class(int(data.get("exit_code", 1))) if isinstance(data, dict) else None
    message = data.get("message") if isinstance(data, dict) else None
    raised = (error or CryostashError)(str(message or f"the daemon answered {status}"))
    if isinstance(data, dict) and data.get("multiline") is True:
        raised.multiline = True
    raise raised


def status(socket_path: Path = DEFAULT_SOCKET, timeout: float = 10.0) -> dict[str, Any]:
    """The daemon's ``/v1/status``: version, pid, uptime_s, in_flight, workers,
    repositories, engine, serves (store, catalog, scratch, host)."""
    code, data = request("GET", "/v1/status", socket_path=socket_path, timeout=timeout)
    if code != 200 or not isinstance(data, dict):
        raise DaemonError(f"{socket_path} answered {code} to /v1/status")
    return data
