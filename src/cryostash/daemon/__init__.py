"""``cryostash daemon``: a long-running per-host service on a UNIX socket (HTTP/1.1 and
JSON) that serves every verb through the same operations as the command line, Docker's
checkpoint routes, health and Prometheus metrics, with warm repositories (catalog engine
and pool, store clients) reused across requests. See docs/daemon.md.

Modules: :mod:`~cryostash.daemon.server` (its life: socket, warm-up, SIGTERM),
:mod:`~cryostash.daemon.app` (the aiohttp application and its middleware),
:mod:`~cryostash.daemon.routes_v1` (``/v1``, ``/healthz``, ``/metrics``),
:mod:`~cryostash.daemon.routes_docker` (Docker's routes), :mod:`~cryostash.daemon.codec`
(JSON to requests, results to JSON), :mod:`~cryostash.daemon.replies` (errors to
statuses and bodies), :mod:`~cryostash.daemon.runner` (operations on worker threads),
:mod:`~cryostash.daemon.pool` (the warm repositories), :mod:`~cryostash.daemon.metrics`,
:mod:`~cryostash.daemon.logs` (JSON lines), :mod:`~cryostash.daemon.listen` (the private
socket), :mod:`~cryostash.daemon.config` and :mod:`~cryostash.daemon.client` (a client
with the standard library only). The server needs the ``daemon`` extra (aiohttp,
prometheus-client); the client does not.
"""
