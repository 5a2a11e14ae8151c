"""``serve``: the daemon's life, from a private socket to a clean exit.

Start: bind the socket (:mod:`cryostash.daemon.listen`) and, with ``--listen``, a TCP
address with mutual TLS (:mod:`cryostash.daemon.tls`), warm one repository (open the
catalog, which refuses an outdated schema, and the default store) so that a broken
configuration fails at start and not at the first request, then accept requests.

A client that disconnects has its request's handler cancelled (aiohttp's
``handler_cancellation``), which cancels its operation (:mod:`cryostash.daemon.cancel`).

SIGTERM (or SIGINT): stop accepting (the listening socket is closed at once), let every
operation in flight finish and its reply be sent, close the repositories, remove the
socket file, exit 0. A second signal changes nothing: operations are never abandoned
half-way by the daemon (SIGKILL leaves what a killed command leaves).
"""

from __future__ import annotations

import asyncio
import os
import signal
from typing import TYPE_CHECKING

from aiohttp import web

from cryostash import __version__
from cryostash.daemon import app as daemon_app
from cryostash.daemon import cancel, tls
from cryostash.daemon.config import DaemonConfig, serves
from cryostash.daemon.listen import bind_unix, remove
from cryostash.daemon.logs import emit
from cryostash.daemon.metrics import Metrics
from cryostash.daemon.pool import RepositoryPool
from cryostash.daemon.runner import Runner

if TYPE_CHECKING:
    from cryostash.config import Settings
    from cryostash.repository import Repository

#: Seconds the HTTP server waits for replies still being written at shutdown.
SHUTDOWN_GRACE_S = 30.0


def serve(settings: Settings, config: DaemonConfig, jobs: int = 4) -> int:
    """Run the daemon until SIGTERM or SIGINT; the exit code (0).

    Raises:
        UsageError: the socket cannot be made private (see :func:`bind_unix`).
        CatalogError, SchemaOutdated, StorageError...: the warm-up failed.
    """
    return asyncio.run(_serve(settings, config, jobs))


async def _serve(settings: Settings, config: DaemonConfig, jobs: int) -> int:
    from cryostash.repository import Repository

    def factory() -> Repository:
        return Repository(settings, jobs=jobs, progress=cancel.progress_for)

    pool = RepositoryPool(factory, config.workers)
    await asyncio.to_thread(_warm, pool)
    metrics = Metrics()
    runner = Runner(pool, metrics, config.workers)
    context = tls.server_context(config.tcp) if config.tcp is not None else None
    tcp = tls.bind_tcp(config.tcp) if config.tcp is not None else None
    sock = bind_unix(config.socket, config.group)
    app_runner = web.AppRunner(
        daemon_app.build(config, runner, metrics, serves(settings)), handle_signals=False,
        access_log=None, shutdown_timeout=SHUTDOWN_GRACE_S, handler_cancellation=True,
    )
    await app_runner.setup()
    sites = [web.SockSite(app_runner, sock)]
    if tcp is not None:
        sites.append(web.SockSite(app_runner, tcp, ssl_context=context))
    for site in sites:
        await site.start()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    emit(
        "listening", socket=str(config.socket), pid=os.getpid(), version=__version__,
        workers=config.workers, engine=config.engine, group=config.group,
        tcp=tls.bound_url(tcp) if tcp is not None else None,
    )
    try:
        await stop.wait()
        emit("stopping", in_flight=runner.in_flight)
        for site in sites:
            await site.stop()  # no new connection from here
        remove(config.socket)
        await runner.drain()
        await app_runner.cleanup()
    finally:
        remove(config.socket)
        pool.close()
    emit("stopped")
    return 0


def _warm(pool: RepositoryPool) -> None:
    """Open one repository's catalog and default store, and prove the store writable (a
    missing local store is created, as the catalog is: the daemon is the host's service
    for writes as well as reads); errors raised as they come."""
    with pool.lend() as repo:
        _ = repo.catalog
        repo.store().check_writable()
