"""``ForwardingBackend``: the base of every backend wrapper (restic's and kopia's style).

A wrapper holds the backend it wraps (:attr:`ForwardingBackend.inner`) and presents the
same :class:`~cryostash.objects.backend.Backend` protocol; this base forwards every call
to ``inner`` through one hook, :meth:`ForwardingBackend.forward`, so a subclass overrides
only what it changes: the hook (the retrying wrapper repeats every call there), or a
method or two (the caching wrapper: ``get`` and ``delete`` of chunks). The capabilities
(``url``, ``remote``, ``atomic_create``) are the inner backend's. :meth:`unwrap` gives the
wrapped backend back (restic's ``Unwrap``).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from typing import TypeVar

from cryostash.objects.backend import Backend, Buffer, ObjectInfo, WriteBatch
from cryostash.objects.key import Key

T = TypeVar("T")


class ForwardingBackend:
    """``inner``, every call forwarded through :meth:`forward` (see the module docstring).
    Thread-safe if ``inner`` is and the subclass's hook is."""

    def __init__(self, inner: Backend) -> None:
        self.inner = inner

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.inner!r})"

    @property
    def url(self) -> str:
        return self.inner.url

    @property
    def remote(self) -> bool:
        return self.inner.remote

    @property
    def atomic_create(self) -> bool:
        return self.inner.atomic_create

    def unwrap(self) -> Backend:
        """The backend this one wraps."""
        return self.inner

    def forward(self, op: str, call: Callable[[], T], size: int = 0) -> T:
        """Run ``call`` (the inner backend's method ``op``; ``size``: bytes it writes).
        The base runs it once; subclasses wrap it."""
        return call()

    def get(self, key: Key) -> bytes:
        return self.forward("get", lambda: self.inner.get(key))

    def put(self, key: Key, parts: Sequence[Buffer]) -> bool:
        size = sum(len(p) for p in parts)
        return self.forward("put", lambda: self.inner.put(key, parts), size)

    def create(self, key: Key, data: bytes) -> None:
        self.forward("create", lambda: self.inner.create(key, data), len(data))

    def exists(self, key: Key) -> bool:
        return self.forward("exists", lambda: self.inner.exists(key))

    def stat(self, key: Key) -> ObjectInfo:
        return self.forward("stat", lambda: self.inner.stat(key))

    def delete(self, key: Key) -> None:
        self.forward("delete", lambda: self.inner.delete(key))

    def delete_prefix(self, prefix: str) -> None:
        self.forward("delete_prefix", lambda: self.inner.delete_prefix(prefix))

    def scan(self, prefix: str) -> list[ObjectInfo]:
        return self.forward("scan", lambda: self.inner.scan(prefix))

    def top(self) -> list[ObjectInfo]:
        return self.forward("top", self.inner.top)

    def has_any(self, prefix: str) -> bool:
        return self.forward("has_any", lambda: self.inner.has_any(prefix))

    def batch(self, jobs: int) -> WriteBatch:
        return self.forward("batch", lambda: self.inner.batch(jobs))

    def root_exists(self) -> bool:
        return self.forward("root_exists", self.inner.root_exists)

    def check_writable(self) -> None:
        self.forward("check_writable", self.inner.check_writable)

    def tidy(self, prefix: str, *, older_than: float, keep: Iterable[str] = ()) -> int:
        return self.forward(
            "tidy", lambda: self.inner.tidy(prefix, older_than=older_than, keep=keep)
        )
