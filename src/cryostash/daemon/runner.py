"""``Runner``: runs operations in worker threads, each with a repository of the pool, and
counts them (metrics, in-flight, logs).

Operations are synchronous (:mod:`cryostash.operations`); the event loop hands each to a
thread of a pool of ``workers`` and awaits it, so requests run concurrently (up to
``workers`` at once; more wait their turn) and the loop keeps answering ``/_ping``,
``/healthz`` and ``/metrics``. A request whose client disconnects has its handler
cancelled by aiohttp: :meth:`Runner.run` then sets the operation's cancellation event,
which the operation honours where an interrupted command would stop
(:mod:`cryostash.daemon.cancel`; one still waiting for a worker never starts). The
thread itself is never abandoned: :meth:`Runner.drain` waits for every operation
started.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from cryostash.daemon import cancel
from cryostash.daemon.logs import emit
from cryostash.daemon.metrics import Metrics
from cryostash.daemon.pool import RepositoryPool
from cryostash.daemon.replies import v1_body
from cryostash.errors import CryostashError, Interrupted


class Runner:
    """Operations on worker threads, with pooled repositories, metrics and logs."""

    def __init__(self, pool: RepositoryPool, metrics: Metrics, workers: int) -> None:
        self.pool = pool
        self.metrics = metrics
        self._executor = ThreadPoolExecutor(workers, thread_name_prefix="cryostash-op")
        self._started: set[asyncio.Future[Any]] = set()
        self._lock = threading.Lock()
        self._in_flight = 0

    @property
    def in_flight(self) -> int:
        """Operations running now."""
        with self._lock:
            return self._in_flight

    async def run(self, verb: str, request: object, api: str) -> Any:
        """The result of the operation ``verb`` on ``request`` (its error raised as is).

        Cancelled (the client went away): the operation is asked to stop
        (:mod:`cryostash.daemon.cancel`) and goes on unwinding on its thread; the
        cancellation propagates to the handler at once."""
        from cryostash.operations import VERBS

        function = VERBS[verb].function
        stop = threading.Event()
        loop = asyncio.get_running_loop()
        future = loop.run_in_executor(
            self._executor, self._call, verb, function, request, api, stop
        )
        self._started.add(future)
        future.add_done_callback(self._started.discard)
        try:
            return await asyncio.shield(future)
        except asyncio.CancelledError:
            stop.set()
            emit("cancelling", verb=verb, api=api)
            raise

    def _call(
        self, verb: str, function: Any, request: object, api: str, stop: threading.Event
    ) -> Any:
        """In a worker thread: lend a repository, run (cancellable by ``stop``), count,
        log."""
        with self._lock:
            self._in_flight += 1
        self.metrics.in_flight.inc()
        t0 = time.monotonic()
        error: BaseException | None = None
        result: Any = None
        try:
            cancel.check(stop)  # cancelled while it waited for a worker: never started
            with cancel.bound(stop), self.pool.lend() as repo:
                result = function(repo, request)
            return result
        except BaseException as exc:
            error = exc
            raise
        finally:
            seconds = time.monotonic() - t0
            with self._lock:
                self._in_flight -= 1
            self.metrics.in_flight.dec()
            self.metrics.finished(verb, api, seconds, error, result)
            _log(verb, api, seconds, error)

    async def drain(self) -> None:
        """Wait for every operation started, then stop the worker threads."""
        while self._started:
            await asyncio.gather(*list(self._started), return_exceptions=True)
        self._executor.shutdown(wait=True)


def _log(verb: str, api: str, seconds: float, error: BaseException | None) -> None:
    fields: dict[str, Any] = {"verb": verb, "api": api, "duration_s": round(seconds, 6)}
    if error is None:
        emit("operation", outcome="ok", **fields)
        return
    if isinstance(error, Interrupted):
        emit("operation", logging.WARNING, outcome="cancelled", **fields)
        return
    body = v1_body(error)
    unexpected = not isinstance(error, CryostashError)
    emit(
        "operation", logging.ERROR if unexpected else logging.WARNING,
        error=error if unexpected else None,
        outcome="error", kind=body["kind"], exit_code=body["exit_code"],
        message=body["message"], **fields,
    )
