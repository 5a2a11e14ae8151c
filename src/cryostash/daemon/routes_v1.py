"""The daemon's own API: every verb of :data:`cryostash.operations.VERBS`, its status,
health and metrics.

- ``POST /v1/verbs/{verb}``: the body is the verb's request as a JSON object (the fields
  of its request dataclass, :mod:`cryostash.daemon.codec`); ``200`` and the result as
  JSON (with ``?form=fields``, its dataclass fields, lossless: what the command line's
  client decodes), or an error (:mod:`cryostash.daemon.replies`). The verbs that need a local stream
  (``import``, ``export``, ``migrate-receive``) and ``migrate`` with ``to`` answer 501.
- ``GET /v1/verbs``: the verbs served.
- ``GET /v1/version``, ``GET /v1/status`` (version, PID, uptime, operations in flight).
- ``GET /healthz``: ``200 {"status": "ok"}`` while the daemon serves.
- ``GET /metrics``: Prometheus's text format (:mod:`cryostash.daemon.metrics`).

Handlers only decode, check the daemon's configuration, call the operation through the
:class:`~cryostash.daemon.runner.Runner` and encode: no verb logic here.
"""

from __future__ import annotations

import json
import os
import time
from typing import Any

from aiohttp import web

from cryostash import __version__
from cryostash.daemon.codec import decode_request, encode
from cryostash.daemon.config import DaemonConfig
from cryostash.daemon.metrics import Metrics
from cryostash.daemon.replies import NotServed, v1_body, v1_status
from cryostash.daemon.runner import Runner
from cryostash.errors import UsageError

#: Verbs that need a local stream (an archive, a protocol on stdin): in process only.
STREAM_VERBS = frozenset({"import", "export", "migrate-receive"})

CONFIG = web.AppKey("config", DaemonConfig)
RUNNER = web.AppKey("runner", Runner)
METRICS = web.AppKey("metrics", Metrics)
STARTED = web.AppKey("started", float)
SERVES = web.AppKey("serves", dict[str, str])


def add_routes(app: web.Application) -> None:
    """Register the ``/v1`` routes, ``/healthz`` and ``/metrics`` on ``app``."""
    app.router.add_post("/v1/verbs/{verb}", post_verb)
    app.router.add_get("/v1/verbs", get_verbs)
    app.router.add_get("/v1/version", get_version)
    app.router.add_get("/v1/status", get_status)
    app.router.add_get("/healthz", get_health)
    app.router.add_get("/metrics", get_metrics)


def served_verbs() -> list[str]:
    """The verbs ``POST /v1/verbs/{verb}`` runs."""
    from cryostash.operations import VERBS

    return sorted(v for v in VERBS if v not in STREAM_VERBS)


def _error(exc: BaseException) -> web.Response:
    return web.json_response(v1_body(exc), status=v1_status(exc))


async def post_verb(request: web.Request) -> web.Response:
    from cryostash.operations import VERBS

    verb = request.match_info["verb"]
    try:
        if verb not in VERBS:
            raise UsageError(f"unknown verb {verb!r} (served: {', '.join(served_verbs())})")
        if verb in STREAM_VERBS:
            raise NotServed(
                f"{verb} needs a local stream and is not served by the daemon yet: run "
                f"`cryostash {verb.replace('-receive', ' --receive')}` on the host"
            )
        body = await _json(request)
        decoded = decode_request(VERBS[verb].request, body, verb)
        if getattr(decoded, "to", None) is not None:
            raise NotServed("migrate --to is not served by the daemon yet: run it in process")
        request.app[CONFIG].check_dir(getattr(decoded, "checkpoint_dir", None))
        result = await request.app[RUNNER].run(verb, decoded, "v1")
    except Exception as exc:
        return _error(exc)
    return web.json_response(encode(result, fields=request.query.get("form") == "fields"))


async def _json(request: web.Request) -> Any:
    """The request's body as JSON (an empty body: ``{}``).

    Raises:
        UsageError: the body is not JSON.
    """
    raw = await request.read()
    if not raw.strip():
        return {}
    try:
        return json.loads(raw)
    except (ValueError, UnicodeDecodeError) as exc:
        raise UsageError(f"the request body is not JSON: {exc}") from None


async def get_verbs(request: web.Request) -> web.Response:
    return web.json_response({"verbs": served_verbs(), "not_served": sorted(STREAM_VERBS)})


async def get_version(request: web.Request) -> web.Response:
    return web.json_response({"version": __version__, "api": "v1"})


async def get_status(request: web.Request) -> web.Response:
    app = request.app
    return web.json_response(
        {
            "version": __version__,
            "pid": os.getpid(),
            "uptime_s": round(time.monotonic() - app[STARTED], 3),
            "in_flight": app[RUNNER].in_flight,
            "workers": app[CONFIG].workers,
            "repositories": app[RUNNER].pool.made,
            "engine": app[CONFIG].engine,
            "serves": app[SERVES],
            "allowed_dirs": app[CONFIG].allowed(),
        }
    )


async def get_health(request: web.Request) -> web.Response:
    return web.json_response({"status": "ok"})


async def get_metrics(request: web.Request) -> web.Response:
    metrics = request.app[METRICS]
    return web.Response(body=metrics.text(), headers={"Content-Type": metrics.content_type})
