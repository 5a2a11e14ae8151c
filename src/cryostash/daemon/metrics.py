"""The daemon's Prometheus metrics (``GET /metrics``), in a registry of its own.

- ``cryostash_daemon_operations_total{verb, api}``: operations run (finished), by verb
  and by the API that asked (``v1`` or ``docker``);
- ``cryostash_daemon_operation_failures_total{verb, kind, exit_code}``: those that failed,
  by error class and its exit code (``kind="Exception"``, ``exit_code="1"``: unexpected);
- ``cryostash_daemon_operation_duration_seconds{verb}``: a histogram of their durations;
- ``cryostash_daemon_operations_in_flight``: operations running now;
- ``cryostash_daemon_stored_bytes_total{verb}``: bytes a create uploaded (its
  ``bytes_uploaded`` stat), and what a restore downloaded (``bytes_downloaded``);
- ``cryostash_daemon_start_time_seconds``: when the daemon started (Unix time).

No label holds a checkpoint or target name, a path or a URL: only verbs and error classes.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST

#: Duration buckets (seconds): a warm ``ls`` is milliseconds, a big create minutes.
BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 900)
#: The stats of a result counted as stored bytes.
BYTE_STATS = ("bytes_uploaded", "bytes_downloaded")


class Metrics:
    """The daemon's counters, gauges and histograms (thread-safe, as prometheus_client's)."""

    content_type = CONTENT_TYPE_LATEST

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self.operations = Counter(
            "cryostash_daemon_operations", "Operations run, by verb and API.",
            ("verb", "api"), registry=self.registry,
        )
        self.failures = Counter(
            "cryostash_daemon_operation_failures", "Operations that failed, by error class.",
            ("verb", "kind", "exit_code"), registry=self.registry,
        )
        self.duration = Histogram(
            "cryostash_daemon_operation_duration_seconds", "Duration of operations, by verb.",
            ("verb",), buckets=BUCKETS, registry=self.registry,
        )
        self.in_flight = Gauge(
            "cryostash_daemon_operations_in_flight", "Operations running now.",
            registry=self.registry,
        )
        self.stored_bytes = Counter(
            "cryostash_daemon_stored_bytes", "Bytes uploaded (create) or downloaded "
            "(restore), by verb.", ("verb",), registry=self.registry,
        )
        started = Gauge(
            "cryostash_daemon_start_time_seconds", "When the daemon started (Unix time).",
            registry=self.registry,
        )
        started.set(time.time())

    def finished(
        self, verb: str, api: str, seconds: float, error: BaseException | None, result: object
    ) -> None:
        """Count one operation of ``verb`` that ran ``seconds`` and raised ``error`` (or
        returned ``result``)."""
        self.operations.labels(verb, api).inc()
        self.duration.labels(verb).observe(seconds)
        if error is not None:
            code = getattr(error, "exit_code", 1)
            kind = type(error).__name__ if hasattr(error, "exit_code") else "Exception"
            self.failures.labels(verb, kind, str(code)).inc()
            return
        stats = getattr(result, "stats", None) or getattr(result, "details", None)
        if isinstance(stats, Mapping):
            counted = sum(_number(stats.get(key)) for key in BYTE_STATS)
            if counted:
                self.stored_bytes.labels(verb).inc(counted)

    def text(self) -> bytes:
        """Everything, in Prometheus's text format."""
        return generate_latest(self.registry)


def _number(value: Any) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) and value > 0 else 0
