"""``RetryPolicy``: how often, how long apart and for how long one call is retried.

- at most :attr:`RetryPolicy.attempts` attempts per call (the first included);
- exponential back-off with jitter: before retry *n* (1-based) the wait is drawn between
  half and all of ``min(backoff_s * 2**(n-1), max_backoff_s)`` ("equal jitter": hosts
  that failed together do not retry together, and a wait never shrinks to nothing);
- a total time limit per call, :attr:`RetryPolicy.deadline_s`: no retry is started whose
  wait would end after it (a call in flight is never interrupted: its own timeouts, e.g.
  botocore's, bound it).

The clock, the sleep and the random source are fields (defaults: ``time.monotonic``,
``time.sleep``, ``random.random``), so tests inject their own and stay deterministic.
A policy is immutable and thread-safe (``random.random`` is).
"""

from __future__ import annotations

import random as _random
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TypeVar

T = TypeVar("T")


def _never() -> None:
    return None


@dataclass(frozen=True)
class RetryPolicy:
    """See the module docstring.

    Attributes:
        attempts: attempts per call, the first included (at least 1).
        backoff_s: the first back-off bound (doubled for each further retry).
        max_backoff_s: the largest back-off bound.
        deadline_s: total time allowed for one call, retries included (None: no limit).
        clock, sleep, random: the time source, the wait, and a source of floats in [0, 1).
    """

    attempts: int = 3
    backoff_s: float = 0.25
    max_backoff_s: float = 10.0
    deadline_s: float | None = 120.0
    clock: Callable[[], float] = field(default=time.monotonic, repr=False, compare=False)
    sleep: Callable[[float], None] = field(default=time.sleep, repr=False, compare=False)
    random: Callable[[], float] = field(default=_random.random, repr=False, compare=False)

    def delay(self, retry: int) -> float:
        """The wait before retry number ``retry`` (1-based), jitter drawn."""
        bound = min(self.backoff_s * 2.0 ** (retry - 1), self.max_backoff_s)
        return bound / 2 + bound / 2 * self.random()

    def run(
        self,
        call: Callable[[], T],
        *,
        retryable: Callable[[Exception], bool],
        on_failure: Callable[[], None] = _never,
        on_retry: Callable[[], None] = _never,
    ) -> T:
        """``call()``, repeated while it raises an exception ``retryable`` accepts, within
        the attempts and the deadline; the last exception is raised as it is.

        ``on_failure`` runs after every failed attempt, ``on_retry`` before every retry
        (the counters of the retrying wrapper). ``BaseException`` (Ctrl-C) is never retried.
        """
        start = self.clock()
        attempts = max(1, self.attempts)
        for attempt in range(1, attempts + 1):
            try:
                return call()
            except Exception as exc:
                on_failure()
                if attempt >= attempts or not retryable(exc):
                    raise
                wait = self.delay(attempt)
                if self.deadline_s is not None and (
                    self.clock() - start + wait > self.deadline_s
                ):
                    raise
                on_retry()
                self.sleep(wait)
        raise AssertionError("unreachable")  # pragma: no cover
