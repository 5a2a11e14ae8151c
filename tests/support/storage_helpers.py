"""Shared helpers of the storage conformance suite (``tests/test_backend.py``,
``tests/test_store.py``, ``tests/test_store_wrappers.py``, ``tests/test_store_edges.py``):
retry policies, chunk and manifest makers, a thread racer, a scriptable flaky backend, and a
stand-in for the catalog's chunk reservation (``FakeCatalog``, also for the transfer tests).

No fixtures live here: the suite's shared fixtures (``backend``, ``moto_server``) are those
of :mod:`tests.support.stores`, registered in ``tests/conftest.py``.
"""

from __future__ import annotations

import os
import threading
from collections import Counter
from collections.abc import Callable, Mapping, Set
from datetime import UTC, datetime
from typing import TypeVar

import blake3
import pytest

from cryostash.objects import Backend as StorageBackend
from cryostash.objects import Buffer, RetryPolicy
from cryostash.objects.errors import boundary
from cryostash.objects.forwarding import ForwardingBackend
from cryostash.objects.key import Key, other
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


def key(path: str) -> Key:
    """A key of kind "other" at ``path`` (the conformance suite's objects)."""
    return other(path)


def temp_files(raw: RawStore) -> list[str]:
    """Temporary files of interrupted writes (``.NAME.<random>.tmp``) anywhere."""
    return [f for f in raw.files() if f.rpartition("/")[2].startswith(".")]


class FakeFlakyBackend(ForwardingBackend):
    """A fake backend for tests: the real ``inner`` one, except for the failures scripted
    with :meth:`fail` (raised instead of the next calls of a method) and :meth:`lose_answer`
    (the next call of a method runs, then raises as if its answer had been lost). Like a
    real backend it raises the scripted library errors as sentinels, at its boundary
    (:func:`cryostash.objects.errors.classify`); ``calls`` counts the calls by method."""

    def __init__(self, inner: StorageBackend) -> None:
        super().__init__(inner)
        self.calls: Counter[str] = Counter()
        self._before: dict[str, list[BaseException]] = {}
        self._after: dict[str, list[BaseException]] = {}

    def fail(self, method: str, *errors: BaseException) -> None:
        self._before.setdefault(method, []).extend(errors)

    def lose_answer(self, method: str, error: BaseException | None = None) -> None:
        self._after.setdefault(method, []).append(error or ConnectionResetError("lost"))

    def forward(self, op: str, call: Callable[[], T], size: int = 0) -> T:
        self.calls[op] += 1
        with boundary():
            if self._before.get(op):
                raise self._before[op].pop(0)
            result = call()
            if self._after.get(op):
                raise self._after[op].pop(0)
        return result


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


class FakeCatalog:
    """What the manager's reserve does: remember digests, report the new ones."""

    def __init__(self) -> None:
        self.known: set[str] = set()
        self.calls = 0

    def reserve(self, sizes: Mapping[str, int]) -> Set[str]:
        self.calls += 1
        fresh = set(sizes) - self.known
        self.known |= set(sizes)
        return fresh
