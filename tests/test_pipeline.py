"""The chunked pipeline (pack / unpack) on every store backend: round trips, dedup,
the chunk cache, and refusal of wrong bytes."""

from __future__ import annotations

import errno
import os
from collections.abc import Sequence
from pathlib import Path

import blake3
import pytest

from cryostash.errors import IntegrityError, StorageError
from cryostash.objects import Buffer, ChunkCache, RetryPolicy, WriteBatch
from cryostash.objects.key import Key
from cryostash.objects.local import LocalBackend
from cryostash.store import Store
from cryostash.transfer.chunking import ChunkParams, zero_digest
from cryostash.transfer.pack import pack
from cryostash.transfer.unpack import unpack
from tests.support.faults import FaultPlan, fail
from tests.support.storage_helpers import FakeCatalog, trace_renames
from tests.support.stores import Backend

PARAMS = ChunkParams(1 << 14)  # 16 KiB average: many chunks from a few MiB
#: Retries without waiting.
NO_WAIT = RetryPolicy(attempts=3, backoff_s=0)


def make_image(root: Path, seed: int = 0) -> Path:
    """An image-like folder: a page file (random then zeros), small files, an empty
    file and a sub-folder."""
    rnd = __import__("random").Random(seed)
    root.mkdir(parents=True)
    (root / "pages-1.img").write_bytes(rnd.randbytes(1 << 20) + bytes(1 << 20))
    (root / "core-1.img").write_bytes(b"core" * 100)
    (root / "empty.img").write_bytes(b"")
    (root / "sub").mkdir()
    (root / "sub" / "mm.img").write_bytes(rnd.randbytes(5000))
    os.chmod(root / "core-1.img", 0o640)
    return root


def tree(root: Path) -> dict[str, tuple[bytes, int]]:
    return {
        str(p.relative_to(root)): (p.read_bytes(), p.stat().st_mode & 0o777)
        for p in sorted(root.rglob("*"))
        if p.is_file()
    }


def test_round_trip_rebuilds_every_file_and_mode(backend: Backend, tmp_path: Path) -> None:
    src = make_image(tmp_path / "img")
    store = backend.store()
    packed = pack(store, src, params=PARAMS, jobs=3)
    by_path = {e.path: e for e in packed.entries}
    assert sorted(by_path) == ["core-1.img", "empty.img", "pages-1.img", "sub/mm.img"]
    pages = by_path["pages-1.img"]
    assert pages.digest == blake3.blake3((src / "pages-1.img").read_bytes()).hexdigest()
    assert sum(pages.chunk_sizes) == pages.size and len(pages.blobs) > 10
    assert by_path["empty.img"].blobs == ()
    s = packed.stats
    assert s.bytes_scanned == sum(e.size for e in packed.entries)
    assert s.chunks_total == sum(len(e.blobs) for e in packed.entries)
    assert s.chunks_zero > 0 and s.chunks_new == s.chunks_unique
    # Zeros dedup to one chunk, random bytes are stored raw: about half of the image.
    assert s.bytes_stored < 0.6 * s.bytes_scanned
    out = tmp_path / "out"
    down = unpack(store, packed.entries, out, jobs=2)
    assert tree(out) == tree(src)
    assert down.bytes_restored == s.bytes_scanned
    zeros = {
        d for e in packed.entries for d, n in zip(e.blobs, e.chunk_sizes, strict=True)
        if d == zero_digest(n)
    }
    assert down.chunks_zero == s.chunks_zero
    assert down.chunks_downloaded == s.chunks_unique - len(zeros), "zero chunks are not fetched"
    assert not [p for p in out.rglob(".*")], "temporary files left behind"


def test_second_pack_of_a_slightly_changed_image_stores_only_the_changed_chunks(
    backend: Backend, tmp_path: Path
) -> None:
    src = make_image(tmp_path / "img")
    store, catalog = backend.store(), FakeCatalog()
    first = pack(store, src, params=PARAMS, reserve=catalog.reserve).stats
    page = src / "pages-1.img"
    data = bytearray(page.read_bytes())
    changed = len(data) // 20  # 5% of the file, one region
    data[300_000 : 300_000 + changed] = os.urandom(changed)
    page.write_bytes(bytes(data))
    second = pack(store, src, params=PARAMS, reserve=catalog.reserve).stats
    assert second.chunks_known == second.chunks_unique - second.chunks_new
    assert second.chunks_present == 0, "known chunks must not be checked in the store"
    assert changed <= second.bytes_new <= changed + 4 * PARAMS.max
    assert second.bytes_uploaded <= 0.15 * first.bytes_uploaded
    assert second.chunks_new <= changed // PARAMS.min + 4


def test_chunks_the_catalog_knows_are_not_uploaded_and_the_store_is_asked_otherwise(
    backend: Backend, tmp_path: Path
) -> None:
    src = make_image(tmp_path / "img")
    store = backend.store()
    first = pack(store, src, params=PARAMS)
    # No catalog (reserve=None): every chunk is checked against the store, none re-sent.
    again = pack(store, src, params=PARAMS).stats
    assert again.chunks_new == 0 and again.bytes_uploaded == 0
    assert again.chunks_present == first.stats.chunks_unique


def test_unpack_takes_what_the_cache_has_and_downloads_the_rest(
    backend: Backend, tmp_path: Path
) -> None:
    src = make_image(tmp_path / "img")
    store = backend.store()
    cache = ChunkCache(tmp_path / "cache", max_bytes=1 << 30)
    packed = pack(store.with_cache(cache), src, params=PARAMS)
    assert packed.stats.chunks_cached == packed.stats.chunks_new
    cached = sorted(
        d for e in packed.entries for d, n in zip(e.blobs, e.chunk_sizes, strict=True)
        if d != zero_digest(n)
    )
    cached = sorted(set(cached))
    for digest in cached[::2]:
        cache.discard(digest)
    down = unpack(store.with_cache(cache), packed.entries, tmp_path / "out")
    assert tree(tmp_path / "out") == tree(src)
    assert down.chunks_from_cache == len(cached) - len(cached[::2])
    assert down.chunks_downloaded == len(cached[::2])
    assert down.bytes_from_cache > 0 and down.chunks_cached == len(cached[::2])
    # Now everything is cached: a second restore downloads nothing.
    again = unpack(store.with_cache(cache), packed.entries, tmp_path / "out2")
    assert again.chunks_downloaded == 0 and again.bytes_downloaded == 0


def test_a_corrupt_cache_entry_is_dropped_and_downloaded(backend: Backend, tmp_path: Path) -> None:
    src = make_image(tmp_path / "img")
    store = backend.store()
    cache = ChunkCache(tmp_path / "cache")
    packed = pack(store.with_cache(cache), src, params=PARAMS)
    victim = packed.entries[-1].blobs[0]  # sub/mm.img
    cache.path(victim).write_bytes(b"\x00garbage")
    down = unpack(store.with_cache(cache), packed.entries, tmp_path / "out")
    assert tree(tmp_path / "out") == tree(src)
    assert down.chunks_downloaded == 1
    assert cache.get(victim) == store.chunks.read_object(victim)


def test_cache_is_trimmed_to_its_bound(tmp_path: Path) -> None:
    cache = ChunkCache(tmp_path / "cache", max_bytes=3000)
    for i in range(5):
        cache.put(blake3.blake3(bytes([i])).hexdigest(), [b"\x00", bytes(999)])
    assert cache.usage() == (5, 5000)
    assert cache.trim() == 2000
    assert cache.usage() == (3, 3000)


def test_a_corrupt_or_missing_chunk_is_refused_naming_file_and_blob(
    backend: Backend, tmp_path: Path
) -> None:
    src = make_image(tmp_path / "img")
    store = backend.store()
    packed = pack(store, src, params=PARAMS)
    entry = next(e for e in packed.entries if e.path == "sub/mm.img")
    digest = entry.blobs[0]
    raw = backend.raw
    raw.flip_byte(raw.blob(digest), offset=10)
    with pytest.raises(IntegrityError, match=f"blob {digest} of file sub/mm.img is corrupt"):
        unpack(store, packed.entries, tmp_path / "out")
    assert not (tmp_path / "out" / "sub" / "mm.img").exists()
    assert [p.name for p in (tmp_path / "out").rglob("*") if p.is_file()] == []
    with pytest.raises(IntegrityError, match="corrupt"):
        store.chunks.read(digest)
    raw.remove(raw.blob(digest))
    with pytest.raises(IntegrityError, match=f"blob {digest} of file sub/mm.img is missing"):
        unpack(store, packed.entries, tmp_path / "out2")


def test_read_chunk_returns_verified_plain_bytes(backend: Backend, tmp_path: Path) -> None:
    src = make_image(tmp_path / "img")
    store = backend.store()
    packed = pack(store, src, params=PARAMS, level=19)
    entry = next(e for e in packed.entries if e.path == "core-1.img")
    assert store.chunks.read(entry.blobs[0], entry.size) == (src / "core-1.img").read_bytes()
    assert store.chunks.read_object(entry.blobs[0])[:1] == b"\x01"  # zstd-tagged
    with pytest.raises(IntegrityError, match="is corrupt: zstd frame announces 400 bytes"):
        store.chunks.read(entry.blobs[0], 7)


def test_uncompressed_store_tags_every_object_raw(tmp_path: Path) -> None:
    src = make_image(tmp_path / "img")
    store = Store(str(tmp_path / "store"))
    packed = pack(store, src, params=PARAMS, level=None, jobs=1)
    for digest in {d for e in packed.entries for d in e.blobs}:
        assert store.chunks.read_object(digest)[:1] == b"\x00"
    assert packed.stats.bytes_stored == packed.stats.bytes_new + packed.stats.chunks_new


def faulty_store(root: Path, plan: FaultPlan) -> Store:
    """A store on the local disk seen through ``faulty::`` (every call may fail as
    ``plan`` says), retrying without waiting."""
    return Store(f"faulty::file://{root}", {"plan": plan}, retry=NO_WAIT)


def test_transient_store_failures_are_retried(tmp_path: Path) -> None:
    src = make_image(tmp_path / "img")
    plan = FaultPlan([fail("pipe_file", path=r"/blobs/", times=1)])
    store = faulty_store(tmp_path / "store", plan)
    packed = pack(store, src, params=PARAMS)
    assert packed.stats.retries == 1 and plan.faults[0].fired == 1
    assert packed.stats.bytes_uploaded > packed.stats.bytes_stored  # the failed attempt
    plan.add(fail("cat_file", path=r"/blobs/", per_path=True, times=1))  # each first read
    down = unpack(store, packed.entries, tmp_path / "out")
    assert tree(tmp_path / "out") == tree(src)
    assert down.retries == plan.faults[1].fired > 0


def test_a_permanent_failure_stops_the_pipeline_and_is_raised(tmp_path: Path) -> None:
    src = make_image(tmp_path / "img")
    plan = FaultPlan([fail("pipe_file", path=r"/blobs/", transient=False)])
    with pytest.raises(StorageError, match="injected permanent failure of pipe_file"):
        pack(faulty_store(tmp_path / "store", plan), src, params=PARAMS, jobs=2)
    assert plan.faults[0].fired >= 1
    # Stopped soon after the first failure (a permanent failure is not retried): the
    # uploads in flight then, not one per chunk of the image.
    chunks = pack(Store(str(tmp_path / "clean")), src, params=PARAMS).stats.chunks_new
    assert plan.count("pipe_file") < chunks // 2


def test_local_blobs_are_named_only_once_their_bytes_are_on_disk(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    src = make_image(tmp_path / "img")
    store = Store(str(tmp_path / "store"))
    renamed = trace_renames(monkeypatch)
    packed = pack(store, src, params=PARAMS)
    named = [new for new, _ in renamed if "/blobs/" in new]
    assert len(named) == packed.stats.chunks_new > 10
    assert all(was_synced for _, was_synced in renamed), "a blob was named before its sync"
    assert not list((tmp_path / "store").rglob(".*")), "temporary files left behind"
    unpack(store, packed.entries, tmp_path / "out")
    assert tree(tmp_path / "out") == tree(src)


class FakeFailingLocalBackend(LocalBackend):
    """A fake backend for tests: the local disk, whose write batches fail (for good) from
    the ``fail_after + 1``-th object on."""

    def __init__(self, root: str, fail_after: int) -> None:
        super().__init__(root)
        self.fail_after = fail_after
        self.added: list[Key] = []

    def batch(self, jobs: int) -> WriteBatch:  # type: ignore[override]
        real = super().batch(jobs)
        owner = self

        class FakeFailingBatch:
            def add(self, key: Key, parts: Sequence[Buffer]) -> bool:
                owner.added.append(key)
                if len(owner.added) > owner.fail_after:
                    raise OSError(errno.EIO, "disk on fire")
                return real.add(key, parts)

            def commit(self) -> None:
                real.commit()

            def discard(self) -> None:
                real.discard()

        return FakeFailingBatch()


def test_a_failed_pack_leaves_no_new_local_blob_behind(tmp_path: Path) -> None:
    src = make_image(tmp_path / "img")
    fake = FakeFailingLocalBackend(str(tmp_path / "store"), fail_after=5)
    with pytest.raises(StorageError, match="disk on fire"):
        pack(Store.over(fake, NO_WAIT), src, params=PARAMS, jobs=2)
    assert len(fake.added) > 5
    # The chunks added before the failure were never committed: discarded, unnamed.
    assert [p for p in (tmp_path / "store").rglob("*") if p.is_file()] == []
