"""The aiohttp application: both route sets, and the middleware every request passes.

The middleware:

- version check: a client that says its version (header ``Cryostash-Version``, as
  ``cryostash``'s own client does) must be the daemon's version, else ``400`` with
  ``kind: "DaemonError"`` and a message naming both versions; clients that do not say
  (Docker's, curl) are served. Every reply carries the daemon's version in that header.
- unknown routes and methods: JSON ``{"message": ...}`` (Docker's ``page not found``)
  instead of aiohttp's text page;
- an access log line (JSON) per request: method, route (its pattern, no names), status,
  duration.
"""

from __future__ import annotations

import json
import time
from collections.abc import Awaitable, Callable

from aiohttp import web

from cryostash import __version__
from cryostash.daemon import routes_docker, routes_v1
from cryostash.daemon.config import VERSION_HEADER, DaemonConfig
from cryostash.daemon.logs import emit
from cryostash.daemon.metrics import Metrics
from cryostash.daemon.replies import v1_body
from cryostash.daemon.runner import Runner
from cryostash.errors import DaemonError

#: Docker's client reads an error's message only from exactly this content type.
JSON = "application/json"
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def version_mismatch(client: str) -> DaemonError:
    """The error of a client of version ``client`` (not the daemon's)."""
    return DaemonError(
        f"cryostash {client} (client) and the daemon (cryostash {__version__}) differ: "
        "use the same version on both sides (restart the daemon after an upgrade)"
    )


@web.middleware
async def _middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    t0 = time.monotonic()
    client = request.headers.get(VERSION_HEADER)
    response: web.StreamResponse
    if client is not None and client != __version__:
        response = web.json_response(v1_body(version_mismatch(client)), status=400)
    else:
        try:
            response = await handler(request)
        except web.HTTPException as exc:
            message = "page not found" if exc.status == 404 else exc.reason
            body = json.dumps({"message": message}).encode()
            response = web.Response(body=body, status=exc.status, content_type=JSON)
    response.headers[VERSION_HEADER] = __version__
    route = request.match_info.route.resource
    emit(
        "request", method=request.method,
        route=route.canonical if route is not None else "(none)",
        status=response.status, duration_s=round(time.monotonic() - t0, 6),
    )
    return response


def build(
    config: DaemonConfig, runner: Runner, metrics: Metrics, serves: dict[str, str]
) -> web.Application:
    """The application serving ``config`` with ``runner``'s operations; ``serves``: its
    store, catalog, scratch and host as ``/v1/status`` reports them
    (:func:`~cryostash.daemon.config.serves`)."""
    app = web.Application(middlewares=[_middleware])
    app[routes_v1.CONFIG] = config
    app[routes_v1.RUNNER] = runner
    app[routes_v1.METRICS] = metrics
    app[routes_v1.STARTED] = time.monotonic()
    app[routes_v1.SERVES] = serves
    routes_v1.add_routes(app)
    routes_docker.add_routes(app)
    return app
