"""``RetryingBackend``: the one place where store calls are retried.

A :class:`~cryostash.objects.forwarding.ForwardingBackend` (restic's ``backend_retry.go``,
kopia's ``blob/retrying``): every call is repeated while it fails with
:class:`~cryostash.objects.errors.Transient` (the sentinel the backends raise for
timeouts, connection resets, throttling, 5xx), as the
:class:`~cryostash.objects.retry_policy.RetryPolicy` allows (attempts, back-off with
jitter, a total time limit). Anything else is raised at once. Every call of the protocol
is safe to repeat: reads, idempotent deletes, content-addressed writes, and
:meth:`RetryingBackend.create`, which settles the one ambiguity: a transient failure may
hide a create that succeeded (the answer was lost), so when a *retry* finds the key taken
it reads the object back; byte for byte ours means the earlier attempt won.

Counters (thread-safe, for the transfer statistics): :attr:`RetryingBackend.retries`
(calls repeated) and :attr:`RetryingBackend.bytes_failed` (bytes of writes that failed).
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from typing import TypeVar

from cryostash.objects.backend import Backend, Buffer, WriteBatch
from cryostash.objects.errors import AlreadyExists, Transient
from cryostash.objects.forwarding import ForwardingBackend
from cryostash.objects.key import Key
from cryostash.objects.retry_policy import RetryPolicy

T = TypeVar("T")


def _transient(exc: Exception) -> bool:
    return isinstance(exc, Transient)


class RetryingBackend(ForwardingBackend):
    """``inner`` with every call retried by ``policy`` (see the module docstring)."""

    def __init__(self, inner: Backend, policy: RetryPolicy | None = None) -> None:
        super().__init__(inner)
        self.policy = policy or RetryPolicy()
        self._lock = threading.Lock()
        self.retries = 0
        self.bytes_failed = 0

    def _retry(self, call: Callable[[], T], size: int, on_retry: Callable[[], None]) -> T:
        def failed() -> None:
            if size:
                with self._lock:
                    self.bytes_failed += size

        def retrying() -> None:
            with self._lock:
                self.retries += 1
            on_retry()

        return self.policy.run(call, retryable=_transient, on_failure=failed, on_retry=retrying)

    def forward(self, op: str, call: Callable[[], T], size: int = 0) -> T:
        return self._retry(call, size, lambda: None)

    def create(self, key: Key, data: bytes) -> None:
        retried = False

        def once() -> None:
            try:
                self.inner.create(key, data)
            except AlreadyExists:
                if retried and self.forward("get", lambda: self.inner.get(key)) == data:
                    return  # an earlier attempt won; its answer was lost
                raise

        def note() -> None:
            nonlocal retried
            retried = True

        self._retry(once, 0, note)

    def batch(self, jobs: int) -> WriteBatch:
        return _RetryingBatch(self, self.forward("batch", lambda: self.inner.batch(jobs)))


class _RetryingBatch:
    """A batch whose writes are retried like :meth:`RetryingBackend.put`."""

    def __init__(self, owner: RetryingBackend, inner: WriteBatch) -> None:
        self._owner = owner
        self._inner = inner

    def add(self, key: Key, parts: Sequence[Buffer]) -> bool:
        size = sum(len(p) for p in parts)
        return self._owner.forward("add", lambda: self._inner.add(key, parts), size)

    def commit(self) -> None:
        self._inner.commit()

    def discard(self) -> None:
        self._inner.discard()
