"""``RetryingBackend``: the one place where store calls are retried.

A wrapper presenting the :class:`~cryostash.storage.backend.Backend` protocol (restic's
``backend_retry.go``, kopia's ``blob/retrying``): each call is repeated while it fails
*transiently* (timeouts, connection resets, throttling, 5xx: see
:func:`cryostash.storage.translate.is_transient`), :attr:`RetryPolicy.attempts` attempts in
all, with exponential back-off from :attr:`RetryPolicy.backoff_s`. Anything else is
raised at once. Every call of the protocol is safe to repeat: reads, idempotent deletes,
content-addressed writes, and :meth:`RetryingBackend.create`, which settles the one
ambiguity: a transient failure may hide a create that succeeded (the answer was lost),
so when a *retry* finds the key taken it reads the object back; byte for byte ours means
the earlier attempt won.

Counters (thread-safe, for the transfer statistics): :attr:`RetryingBackend.retries`
(calls repeated) and :attr:`RetryingBackend.bytes_failed` (bytes of writes that failed).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import TypeVar

from cryostash.storage.backend import Backend, Buffer, ObjectInfo, WriteBatch
from cryostash.storage.translate import is_precondition_failed, is_transient

T = TypeVar("T")


@dataclass(frozen=True)
class RetryPolicy:
    """Attempts per call (the first included) and the first back-off (doubled each time)."""

    attempts: int = 3
    backoff_s: float = 0.25


class RetryingBackend:
    """``inner`` with every call retried by ``policy`` (see the module docstring)."""

    def __init__(self, inner: Backend, policy: RetryPolicy | None = None) -> None:
        self.inner = inner
        self.policy = policy or RetryPolicy()
        self.url = inner.url
        self.remote = inner.remote
        self.atomic_create = inner.atomic_create
        self._lock = threading.Lock()
        self.retries = 0
        self.bytes_failed = 0

    def __repr__(self) -> str:
        return f"RetryingBackend({self.inner!r})"

    def _call(self, fn: Callable[[], T], size: int = 0) -> T:
        attempts = max(1, self.policy.attempts)
        for attempt in range(1, attempts + 1):
            try:
                return fn()
            except Exception as exc:
                if size:
                    with self._lock:
                        self.bytes_failed += size
                if attempt >= attempts or not is_transient(exc):
                    raise
                with self._lock:
                    self.retries += 1
                time.sleep(self.policy.backoff_s * 2 ** (attempt - 1))
        raise AssertionError("unreachable")  # pragma: no cover

    def get(self, key: str) -> bytes:
        return self._call(lambda: self.inner.get(key))

    def put(self, key: str, parts: Sequence[Buffer]) -> bool:
        size = sum(len(p) for p in parts)
        return self._call(lambda: self.inner.put(key, parts), size)

    def create(self, key: str, data: bytes) -> None:
        retried = False
        attempts = max(1, self.policy.attempts)
        for attempt in range(1, attempts + 1):
            try:
                self.inner.create(key, data)
                return
            except Exception as exc:
                if is_precondition_failed(exc):
                    if retried and self._call(lambda: self.inner.get(key)) == data:
                        return  # an earlier attempt won; its answer was lost
                    raise
                if attempt >= attempts or not is_transient(exc):
                    raise
                retried = True
                with self._lock:
                    self.retries += 1
                time.sleep(self.policy.backoff_s * 2 ** (attempt - 1))

    def exists(self, key: str) -> bool:
        return self._call(lambda: self.inner.exists(key))

    def stat(self, key: str) -> ObjectInfo:
        return self._call(lambda: self.inner.stat(key))

    def delete(self, key: str) -> None:
        self._call(lambda: self.inner.delete(key))

    def delete_prefix(self, prefix: str) -> None:
        self._call(lambda: self.inner.delete_prefix(prefix))

    def scan(self, prefix: str) -> list[ObjectInfo]:
        return self._call(lambda: self.inner.scan(prefix))

    def top(self) -> list[ObjectInfo]:
        return self._call(self.inner.top)

    def has_any(self, prefix: str) -> bool:
        return self.inner.has_any(prefix)

    def batch(self, jobs: int) -> WriteBatch:
        return _RetryingBatch(self, self.inner.batch(jobs))

    def root_exists(self) -> bool:
        return self._call(self.inner.root_exists)

    def check_writable(self) -> None:
        self._call(self.inner.check_writable)

    def tidy(self, prefix: str, *, older_than: float, keep: Iterable[str] = ()) -> int:
        return self.inner.tidy(prefix, older_than=older_than, keep=keep)


class _RetryingBatch:
    """A batch whose writes are retried like :meth:`RetryingBackend.put`."""

    def __init__(self, owner: RetryingBackend, inner: WriteBatch) -> None:
        self._owner = owner
        self._inner = inner

    def add(self, key: str, parts: Sequence[Buffer]) -> bool:
        size = sum(len(p) for p in parts)
        return self._owner._call(lambda: self._inner.add(key, parts), size)

    def commit(self) -> None:
        self._inner.commit()

    def discard(self) -> None:
        self._inner.discard()
