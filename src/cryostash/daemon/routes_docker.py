"""Docker Engine API compatibility for the checkpoint routes, so that Docker's clients
(the ``docker`` command line, docker-py, ...) work unchanged against the daemon's socket:
``docker -H unix:///run/cryostash/cryostash.sock checkpoint create|ls|rm``.

Routes, with or without an API version prefix (``/v1.41/...``):

- ``GET|HEAD /_ping``: ``OK``, with the headers a client negotiates with (``API-Version``
  :data:`API_VERSION`, ``OSType: linux``, ``Docker-Experimental: true``: Docker's
  command line offers ``checkpoint`` only to an experimental daemon).
- ``GET /version``: the server's version, as Docker's ``/version`` shapes it.
- ``POST /containers/{id}/checkpoints``: body ``{"CheckpointID", "CheckpointDir",
  "Exit"}``; ``create ID CheckpointID`` with the daemon's ``--engine`` (the container
  is left running unless ``Exit``); ``201``, empty body.
- ``GET /containers/{id}/checkpoints[?dir=]``: ``200 [{"Name": ...}]``, sorted.
- ``DELETE /containers/{id}/checkpoints/{checkpointID}[?dir=]``: ``rm``; ``200``.

Errors: ``{"message": ...}`` with the command line's words (Docker's) and Docker's
status (:func:`cryostash.daemon.replies.docker_status`). ``CheckpointDir`` and ``dir``
name a store and must be one the daemon allows (:meth:`DaemonConfig.check_dir`).
"""

from __future__ import annotations

import json
import platform
from typing import Any

from aiohttp import web

from cryostash import __version__
from cryostash.daemon.replies import NotServed, docker_body, docker_status
from cryostash.daemon.routes_v1 import CONFIG, RUNNER
from cryostash.errors import UsageError

#: The Docker Engine API version announced (checkpoints are unchanged since 1.25).
API_VERSION = "1.41"
#: The oldest one accepted in a path prefix.
MIN_API_VERSION = "1.25"
_PREFIXES = ("", r"/v{api_version:[0-9]+\.[0-9]+}")


def add_routes(app: web.Application) -> None:
    """Register Docker's routes (unprefixed and ``/vX.Y``-prefixed) on ``app``."""
    for prefix in _PREFIXES:
        app.router.add_get(f"{prefix}/_ping", ping)  # GET also answers HEAD
        app.router.add_get(f"{prefix}/version", version)
        app.router.add_post(f"{prefix}/containers/{{id}}/checkpoints", create)
        app.router.add_get(f"{prefix}/containers/{{id}}/checkpoints", listing)
        app.router.add_delete(f"{prefix}/containers/{{id}}/checkpoints/{{checkpoint}}", remove)


def _headers() -> dict[str, str]:
    return {
        "API-Version": API_VERSION,
        "OSType": "linux",
        "Docker-Experimental": "true",
        "Cache-Control": "no-cache, no-store, must-revalidate",
        "Pragma": "no-cache",
        "Server": f"cryostash/{__version__}",
    }


def _json(data: object, status: int = 200) -> web.Response:
    """JSON as Docker sends it: ``Content-Type: application/json`` exactly (Docker's
    client reads an error's ``message`` only then)."""
    headers = {**_headers(), "Content-Type": "application/json"}
    return web.Response(body=json.dumps(data).encode(), status=status, headers=headers)


def _error(exc: BaseException) -> web.Response:
    return _json(docker_body(exc), docker_status(exc))


async def ping(request: web.Request) -> web.Response:
    return web.Response(text="OK", headers=_headers())


async def version(request: web.Request) -> web.Response:
    body = {
        "Platform": {"Name": "cryostash"},
        "Components": [{"Name": "cryostash", "Version": __version__, "Details": {}}],
        "Version": __version__,
        "ApiVersion": API_VERSION,
        "MinAPIVersion": MIN_API_VERSION,
        "Os": "linux",
        "Arch": {"x86_64": "amd64", "aarch64": "arm64"}.get(platform.machine(), platform.machine()),
        "KernelVersion": platform.release(),
        "Experimental": True,
    }
    return _json(body)


def _engine(request: web.Request) -> str:
    engine = request.app[CONFIG].engine
    if engine is None:
        raise NotServed(
            "the Docker-compatible routes need the daemon started with --engine "
            "runc|podman|docker"
        )
    return engine


def _dir(value: Any) -> str | None:
    if value is None or value == "":
        return None
    if not isinstance(value, str):
        raise UsageError("CheckpointDir must be a string")
    return value


async def create(request: web.Request) -> web.Response:
    from cryostash.operations.create import CreateRequest

    try:
        engine = _engine(request)
        raw = await request.read()
        try:
            body = json.loads(raw) if raw.strip() else {}
        except (ValueError, UnicodeDecodeError):
            raise UsageError("the request body is not JSON") from None
        if not isinstance(body, dict):
            raise UsageError("the request body must be a JSON object")
        container = request.match_info["id"]
        checkpoint_dir = _dir(body.get("CheckpointDir"))
        request.app[CONFIG].check_dir(checkpoint_dir)
        name = body.get("CheckpointID", "")
        wanted = CreateRequest(
            container, name if isinstance(name, str) else str(name), locator=container,
            engine=engine, leave_running=not bool(body.get("Exit", False)),
            checkpoint_dir=checkpoint_dir,
        )
        await request.app[RUNNER].run("create", wanted, "docker")
    except Exception as exc:
        return _error(exc)
    return web.Response(status=201, headers=_headers())


async def listing(request: web.Request) -> web.Response:
    from cryostash.operations.ls import LsRequest

    try:
        _engine(request)
        checkpoint_dir = _dir(request.query.get("dir"))
        request.app[CONFIG].check_dir(checkpoint_dir)
        wanted = LsRequest(request.match_info["id"], checkpoint_dir, names_only=True)
        found = await request.app[RUNNER].run("ls", wanted, "docker")
    except Exception as exc:
        return _error(exc)
    return _json([{"Name": name} for _, name in found.names])


async def remove(request: web.Request) -> web.Response:
    from cryostash.operations.rm import RmRequest

    try:
        _engine(request)
        checkpoint_dir = _dir(request.query.get("dir"))
        request.app[CONFIG].check_dir(checkpoint_dir)
        match = request.match_info
        wanted = RmRequest(match["id"], match["checkpoint"], checkpoint_dir)
        await request.app[RUNNER].run("rm", wanted, "docker")
    except Exception as exc:
        return _error(exc)
    return web.Response(status=200, headers=_headers())
