"""The store's wrappers: :class:`~cryostash.objects.retrying.RetryingBackend` repeats
transient failures only (over a fake flaky backend and through ``faulty::``), and the chunk
cache (``Store.with_cache``, :class:`~cryostash.objects.caching.CachingBackend`) serves
only verified chunks, on every backend.
"""

from __future__ import annotations

import errno
from collections.abc import Iterator, Sequence
from pathlib import Path

import pytest

from cryostash.errors import CheckpointExists, ObjectNotFound, StorageError
from cryostash.objects import Buffer, ChunkCache, RetryPolicy, WriteBatch
from cryostash.objects.caching import CachingBackend
from cryostash.objects.errors import NotFound, PermissionDenied, Transient
from cryostash.objects.key import Key, Kind
from cryostash.objects.location import open_backend
from cryostash.objects.retrying import RetryingBackend
from cryostash.store import Store
from tests.support.faults import FaultPlan, fail, torn
from tests.support.storage_helpers import NO_WAIT, FakeFlakyBackend, encoded, store_chunks
from tests.support.storage_helpers import key as k
from tests.support.stores import Backend


@pytest.fixture
def flaky(tmp_path: Path) -> Iterator[FakeFlakyBackend]:
    yield FakeFlakyBackend(open_backend(str(tmp_path / "store")))


def reset() -> ConnectionResetError:
    return ConnectionResetError(errno.ECONNRESET, "injected reset")


def test_retrying_backend_repeats_transient_failures_only(flaky: FakeFlakyBackend) -> None:
    retrying = RetryingBackend(flaky, NO_WAIT)
    assert (retrying.url, retrying.remote, retrying.atomic_create) == (
        flaky.url,
        flaky.remote,
        flaky.atomic_create,
    )
    flaky.fail("put", reset(), TimeoutError("slow"))
    assert retrying.put(k("blobs/ab/x"), [b"abc", b"def"]) is True
    assert flaky.calls["put"] == 3
    assert (retrying.retries, retrying.bytes_failed) == (2, 12)
    flaky.fail("get", PermissionError(errno.EACCES, "denied"))
    with pytest.raises(PermissionDenied):
        retrying.get(k("blobs/ab/x"))
    assert flaky.calls["get"] == 1  # a permanent failure: raised at once
    with pytest.raises(NotFound):
        retrying.get(k("blobs/ab/missing"))
    assert flaky.calls["get"] == 2  # missing is an answer, not a failure
    flaky.fail("get", reset(), reset(), reset())
    with pytest.raises(Transient):
        retrying.get(k("blobs/ab/x"))
    assert flaky.calls["get"] == 5 and retrying.retries == 4  # 3 attempts in all
    flaky.fail("scan", reset())
    flaky.fail("check_writable", reset())
    assert [o.key for o in retrying.scan("blobs")] == ["blobs/ab/x"]
    retrying.check_writable()
    assert retrying.retries == 6


class FakeClock:
    """A fake clock for the retry policy: ``sleep`` advances it (and is recorded)."""

    def __init__(self) -> None:
        self.now = 1000.0
        self.slept: list[float] = []

    def clock(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)
        self.now += seconds


def test_retrying_backend_waits_longer_each_time(flaky: FakeFlakyBackend) -> None:
    fake = FakeClock()
    policy = RetryPolicy(
        attempts=4, backoff_s=0.5, clock=fake.clock, sleep=fake.sleep, random=lambda: 1.0
    )
    retrying = RetryingBackend(flaky, policy)
    flaky.fail("exists", reset(), reset(), reset())
    assert retrying.exists(k("blobs/ab/x")) is False
    assert fake.slept == [0.5, 1.0, 2.0]


def test_the_back_off_is_jittered_between_half_and_all_of_its_bound() -> None:
    draws = iter([0.0, 0.5, 0.999, 0.25])
    policy = RetryPolicy(backoff_s=1.0, max_backoff_s=4.0, random=lambda: next(draws))
    assert [policy.delay(n) for n in (1, 2, 3, 4)] == [0.5, 1.5, 4.0 * 0.5 + 2.0 * 0.999, 2.5]


def test_no_retry_starts_past_the_total_time_limit() -> None:
    fake = FakeClock()
    calls = 0

    def slow_failure() -> None:  # every attempt takes 4 s, then fails transiently
        nonlocal calls
        calls += 1
        fake.now += 4
        raise Transient("injected slow reset")

    policy = RetryPolicy(
        attempts=10, backoff_s=1.0, max_backoff_s=1.0, deadline_s=10.0,
        clock=fake.clock, sleep=fake.sleep, random=lambda: 1.0,
    )  # fmt: skip
    with pytest.raises(Transient):
        policy.run(slow_failure, retryable=lambda exc: isinstance(exc, Transient))
    # Attempts run 0-4 s and 5-9 s, each retry after 1 s; a third retry would start at
    # 15 s, past the 10 s limit: 3 attempts of the 10 allowed.
    assert calls == 3 and fake.slept == [1.0, 1.0] and fake.now - 1000 == 14
    unlimited = RetryPolicy(attempts=4, backoff_s=1.0, deadline_s=None,
                            clock=fake.clock, sleep=fake.sleep, random=lambda: 1.0)
    calls = 0
    with pytest.raises(Transient):
        unlimited.run(slow_failure, retryable=lambda exc: isinstance(exc, Transient))
    assert calls == 4


def test_retrying_batch_retries_its_writes(
    flaky: FakeFlakyBackend, monkeypatch: pytest.MonkeyPatch
) -> None:
    failures = [Transient("injected reset")]

    class FakeFlakyBatch:
        """A fake batch over the real one, whose first add fails transiently."""

        def __init__(self, inner: WriteBatch) -> None:
            self.inner = inner

        def add(self, key: Key, parts: Sequence[Buffer]) -> bool:
            if failures:
                raise failures.pop()
            return self.inner.add(key, parts)

        def commit(self) -> None:
            self.inner.commit()

        def discard(self) -> None:
            self.inner.discard()

    real_batch = flaky.inner.batch
    monkeypatch.setattr(flaky.inner, "batch", lambda jobs: FakeFlakyBatch(real_batch(jobs)))
    retrying = RetryingBackend(flaky, NO_WAIT)
    batch = retrying.batch(2)
    assert batch.add(k("blobs/ab/x"), [b"x" * 10]) is True
    batch.commit()
    assert flaky.get(k("blobs/ab/x")) == b"x" * 10
    assert (retrying.retries, retrying.bytes_failed) == (1, 10)


def test_a_create_retried_after_a_lost_answer_succeeds(flaky: FakeFlakyBackend) -> None:
    store = Store.over(flaky, NO_WAIT)
    flaky.lose_answer("create")  # stored, but the caller heard a connection reset
    store.manifests.write("c1", "cp1", b"mine")
    assert flaky.calls["create"] == 2 and store.retries == 1
    assert store.manifests.read("c1", "cp1") == b"mine"
    # Lost again, but the object found is someone else's: the name is taken.
    flaky.fail("create", reset())
    flaky.inner.create(k("checkpoints/c1/cp2/manifest.json"), b"theirs")
    with pytest.raises(CheckpointExists):
        store.manifests.write("c1", "cp2", b"mine")
    # Taken at the first attempt: no read-back, no retry.
    gets = flaky.calls["get"]
    with pytest.raises(CheckpointExists):
        store.manifests.write("c1", "cp1", b"mine")
    assert flaky.calls["get"] == gets


def test_a_store_retries_through_the_faulty_protocol(tmp_path: Path) -> None:
    plan = FaultPlan()
    store = Store(f"faulty::file://{tmp_path / 'root'}", {"plan": plan}, retry=NO_WAIT)
    assert not store.supports_atomic_create  # exists-then-write through a chain
    plan.add(torn("pipe_file", keep=1 << 20, path=r"/manifest\.json$", times=1))
    store.manifests.write("t1", "n1", b"{}")  # written whole, answer lost, read back: ours
    assert store.manifests.read("t1", "n1") == b"{}" and store.retries == 1
    plan.add(fail("cat_file", times=2))
    assert store.manifests.read("t1", "n1") == b"{}"
    assert store.retries == 3
    (digest,) = store_chunks(store, b"x" * 1000)
    plan.add(fail("cat_file", path=r"/blobs/", times=3))
    with pytest.raises(StorageError, match="temporary failure") as err:
        store.chunks.read(digest)
    assert err.value.transient and store.retries == 5
    assert store.chunks.read(digest) == b"x" * 1000


class TestChunkCache:
    """``Store.with_cache``: chunk objects read through a local cache, on every backend."""

    def test_a_chunk_is_served_from_the_cache_once_verified(
        self, backend: Backend, tmp_path: Path
    ) -> None:
        base = backend.store(NO_WAIT)
        cache = ChunkCache(tmp_path / "cache")
        store = base.with_cache(cache)
        assert isinstance(store.backend, CachingBackend) and store.url == base.url
        (digest,) = store_chunks(base, b"cached bytes" * 50)
        assert not store.chunks.is_cached(digest) and store.chunks.cached_size(digest) is None
        first = store.chunks.fetch(digest, 600, what="x")
        assert (first.from_cache, first.cached) == (False, True)
        assert store.chunks.is_cached(digest)
        assert store.chunks.cached_size(digest) == first.stored_size
        backend.raw.remove(backend.raw.blob(digest))  # the cache alone has it now
        second = store.chunks.fetch(digest, 600, what="x")
        assert (second.from_cache, second.cached) == (True, False)
        assert bytes(second.plain) == b"cached bytes" * 50
        with pytest.raises(ObjectNotFound):
            base.chunks.read(digest)  # the store without the cache does not have it

    def test_a_corrupt_cache_entry_is_evicted_and_read_from_the_store(
        self, backend: Backend, tmp_path: Path
    ) -> None:
        cache = ChunkCache(tmp_path / "cache")
        store = backend.store(NO_WAIT).with_cache(cache)
        (digest,) = store_chunks(store, b"good bytes" * 40)
        assert store.chunks.fetch(digest, 400, what="x").cached
        cache.path(digest).write_bytes(b"\x00garbage")
        fetched = store.chunks.fetch(digest, 400, what="x")
        assert bytes(fetched.plain) == b"good bytes" * 40 and not fetched.from_cache
        assert fetched.cached  # the good object replaced the bad entry
        assert cache.get(digest) == store.chunks.read_object(digest)

    def test_writes_fill_the_cache_and_trim_bounds_it(
        self, backend: Backend, tmp_path: Path
    ) -> None:
        cache = ChunkCache(tmp_path / "cache", max_bytes=1)
        store = backend.store().with_cache(cache)
        digest, parts = encoded(b"written here" * 30)
        assert store.chunks.cache_object(digest, parts)
        assert not store.chunks.cache_object(digest, parts)  # an entry is kept
        assert cache.get(digest) == b"".join(parts)
        store.chunks.trim_cache()
        assert cache.usage() == (0, 0)

    def test_a_store_without_a_cache_caches_nothing(self, backend: Backend) -> None:
        store = backend.store()
        digest, parts = encoded(b"x" * 100)
        assert not store.chunks.cache_object(digest, parts)
        assert not store.chunks.is_cached(digest) and store.chunks.cached_size(digest) is None
        store.chunks.trim_cache()
        (digest,) = store_chunks(store, b"y" * 100)
        assert not store.chunks.fetch(digest, 100, what="y").cached

    def test_the_cache_shares_the_retry_counters(
        self, flaky: FakeFlakyBackend, tmp_path: Path
    ) -> None:
        base = Store.over(flaky, NO_WAIT)
        cached = base.with_cache(ChunkCache(tmp_path / "cache"))
        (digest,) = store_chunks(base, b"z" * 100)
        flaky.fail("get", reset())
        assert cached.chunks.read(digest) == b"z" * 100
        assert base.retries == cached.retries == 1


def test_the_caching_backend_decides_by_key_kind(tmp_path: Path) -> None:
    inner = open_backend(str(tmp_path / "store"))
    cache = ChunkCache(tmp_path / "cache")
    caching = CachingBackend(inner, cache)
    digest = "ab" * 32
    # A manifest whose path looks like a chunk's is still a manifest: passed through.
    disguised = Key(Kind.MANIFEST, f"blobs/ab/{digest}", digest)
    caching.put(disguised, [b"{}"])
    assert caching.lookup(disguised) == (b"{}", False)
    assert not caching.fill(disguised, [b"{}"]) and not caching.is_cached(disguised)
    assert cache.usage() == (0, 0)
    # A chunk, wherever it lives, is read through the cache.
    chunk = Key(Kind.CHUNK, "anywhere/else", digest)
    assert caching.fill(chunk, [b"cached"]) and caching.is_cached(chunk)
    assert caching.lookup(chunk) == (b"cached", True)
    assert caching.cached_size(chunk) == len(b"cached") and caching.cached_size(disguised) is None


def test_a_deleted_chunk_is_not_served_from_the_cache(
    backend: Backend, tmp_path: Path
) -> None:
    cache = ChunkCache(tmp_path / "cache")
    store = backend.store(NO_WAIT).with_cache(cache)
    (digest,) = store_chunks(store, b"soon gone" * 30)
    assert store.chunks.fetch(digest, 270, what="x").cached and cache.has(digest)
    store.chunks.delete(digest)
    assert not cache.has(digest) and not store.chunks.is_cached(digest)
    with pytest.raises(ObjectNotFound):
        store.chunks.fetch(digest, 270, what="x")
    assert [p for p in (tmp_path / "cache").rglob("*") if p.is_file()] == []  # no entry left
