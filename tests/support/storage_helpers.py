"""Shared helpers of the storage conformance suite (``tests/test_backend.py``,
``tests/test_store.py``, ``tests/test_store_wrappers.py``, ``tests/test_store_edges.py``):
retry policies, chunk and manifest makers, a thread racer, and a scriptable flaky backend.

No fixtures live here: the suite's shared fixtures (``backend``, ``moto_server``) are those
of :mod:`tests.support.stores`, registered in ``tests/conftest.py``.
"""

from __future__ import annotations

import os
import threading
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from datetime import UTC, datetime
from typing import TypeVar

import blake3
import pytest

from cryostash.objects import Backend as StorageBackend
from cryostash.objects import Buffer, ObjectInfo, RetryPolicy, WriteBatch
from cryostash.store import Manifest, Store, codec
from tests.support.stores import RawStore

T = TypeVar("T")
DIGEST_A = blake3.blake3(b"alpha").hexdigest()
#: Retries without waiting (the tests that count attempts).
NO_WAIT = RetryPolicy(attempts=3, backoff_s=0)
#: No retries at all (the tests that look at one failure).
ONCE = RetryPolicy(attempts=1, backoff_s=0)


def encoded(data: bytes, level: int | None = 3) -> tuple[str, list[Buffer]]:
    """The digest of ``data`` and its stored object's parts (as ``pack`` makes them)."""
    return blake3.blake3(data).hexdigest(), list(codec.encode(data, level))


def store_chunks(store: Store, *contents: bytes) -> list[str]:
    """Store each of ``contents`` as a chunk, as ``pack`` does; their digests."""
    batch = store.chunks.batch(jobs=2)
    digests = []
    for data in contents:
        digest, parts = encoded(data)
        batch.add(digest, parts)
        digests.append(digest)
    batch.commit()
    return digests


def manifest_bytes(target: str, name: str) -> bytes:
    """A valid manifest of ``target``/``name`` (no files)."""
    created = datetime(2024, 1, 2, 3, 4, 5, tzinfo=UTC)
    return Manifest(target, name, "fake", "1", "host-a", "6.1", created).to_bytes()


def raced(workers: int, call: Callable[[int], T]) -> list[T | BaseException]:
    """Run ``call(i)`` on ``workers`` threads started together; each result or exception."""
    barrier = threading.Barrier(workers)
    results: list[T | BaseException] = [RuntimeError("did not run")] * workers

    def run(i: int) -> None:
        barrier.wait()
        try:
            results[i] = call(i)
        except BaseException as exc:
            results[i] = exc

    threads = [threading.Thread(target=run, args=(i,)) for i in range(workers)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return results


def temp_files(raw: RawStore) -> list[str]:
    """Temporary files of interrupted writes (``.NAME.<random>.tmp``) anywhere."""
    return [f for f in raw.files() if f.rpartition("/")[2].startswith(".")]


class FakeFlakyBackend:
    """A fake backend for tests: the real ``inner`` one, except for the failures scripted
    with :meth:`fail` (raised instead of the next calls of a method) and :meth:`lose_answer`
    (the next call of a method runs, then raises as if its answer had been lost)."""

    def __init__(self, inner: StorageBackend) -> None:
        self.inner = inner
        self.url, self.remote, self.atomic_create = inner.url, inner.remote, inner.atomic_create
        self.calls: Counter[str] = Counter()
        self._before: dict[str, list[BaseException]] = {}
        self._after: dict[str, list[BaseException]] = {}

    def fail(self, method: str, *errors: BaseException) -> None:
        self._before.setdefault(method, []).extend(errors)

    def lose_answer(self, method: str, error: BaseException | None = None) -> None:
        self._after.setdefault(method, []).append(error or ConnectionResetError("lost"))

    def _do(self, method: str, call: Callable[[], T]) -> T:
        self.calls[method] += 1
        if self._before.get(method):
            raise self._before[method].pop(0)
        result = call()
        if self._after.get(method):
            raise self._after[method].pop(0)
        return result

    def get(self, key: str) -> bytes:
        return self._do("get", lambda: self.inner.get(key))

    def put(self, key: str, parts: Sequence[Buffer]) -> bool:
        return self._do("put", lambda: self.inner.put(key, parts))

    def create(self, key: str, data: bytes) -> None:
        self._do("create", lambda: self.inner.create(key, data))

    def exists(self, key: str) -> bool:
        return self._do("exists", lambda: self.inner.exists(key))

    def stat(self, key: str) -> ObjectInfo:
        return self._do("stat", lambda: self.inner.stat(key))

    def delete(self, key: str) -> None:
        self._do("delete", lambda: self.inner.delete(key))

    def delete_prefix(self, prefix: str) -> None:
        self._do("delete_prefix", lambda: self.inner.delete_prefix(prefix))

    def scan(self, prefix: str) -> list[ObjectInfo]:
        return self._do("scan", lambda: self.inner.scan(prefix))

    def top(self) -> list[ObjectInfo]:
        return self._do("top", self.inner.top)

    def has_any(self, prefix: str) -> bool:
        return self._do("has_any", lambda: self.inner.has_any(prefix))

    def batch(self, jobs: int) -> WriteBatch:
        return self._do("batch", lambda: self.inner.batch(jobs))

    def root_exists(self) -> bool:
        return self._do("root_exists", self.inner.root_exists)

    def check_writable(self) -> None:
        self._do("check_writable", self.inner.check_writable)

    def tidy(self, prefix: str, *, older_than: float, keep: Iterable[str] = ()) -> int:
        return self._do("tidy", lambda: self.inner.tidy(prefix, older_than=older_than, keep=keep))


def trace_renames(monkeypatch: pytest.MonkeyPatch) -> list[tuple[str, bool]]:
    """Patch ``os.fdatasync`` and ``os.rename`` (both still act): the returned list gets
    ``(new name, whether the renamed file had been fdatasync-ed)`` for every rename, so a
    test can prove that an object is named only once its bytes are on disk."""
    synced: set[str] = set()
    renamed: list[tuple[str, bool]] = []
    real_sync, real_rename = os.fdatasync, os.rename

    def fdatasync(fd: int) -> None:
        real_sync(fd)
        synced.add(os.readlink(f"/proc/self/fd/{fd}"))

    def rename(old: str, new: str) -> None:
        renamed.append((new, old in synced))
        real_rename(old, new)

    monkeypatch.setattr(os, "fdatasync", fdatasync)
    monkeypatch.setattr(os, "rename", rename)
    return renamed
