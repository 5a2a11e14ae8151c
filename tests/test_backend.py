"""The Backend protocol conformance suite: every guarantee of the docstrings of
:class:`~cryostash.objects.backend.Backend`, method by method, on every backend of the
``backend`` fixture (memory, local, S3 on moto), bare and wrapped the way production wraps
it (retrying, then caching).

The rest of the storage suite: ``test_store.py`` (the Store API), ``test_store_wrappers.py``
(retrying and caching), ``test_store_edges.py`` (one backend's specifics, URLs, errors).
"""

from __future__ import annotations

import contextlib
import os
import threading
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from cryostash import hooks
from cryostash.objects import Backend as StorageBackend
from cryostash.objects import Buffer, ChunkCache, ObjectInfo, WriteBatch
from cryostash.objects.caching import CachingBackend
from cryostash.objects.errors import AlreadyExists, NotFound
from cryostash.objects.retrying import RetryingBackend
from cryostash.urls import canonical_url
from tests.support.requirements import missing
from tests.support.storage_helpers import NO_WAIT, raced, temp_files
from tests.support.storage_helpers import key as k
from tests.support.stores import Backend


@pytest.fixture(params=["bare", "wrapped"])
def proto(request: pytest.FixtureRequest, backend: Backend, tmp_path: Path) -> StorageBackend:
    """The fixture's backend as :func:`open_backend` makes it (``bare``), or wrapped as a
    transfer with a chunk cache uses it (``wrapped``: retrying, then caching)."""
    bare = backend.open()
    if request.param == "bare":
        return bare
    return CachingBackend(RetryingBackend(bare, NO_WAIT), ChunkCache(tmp_path / "cache"))


class TestBackendProtocol:
    """Every guarantee of the ``Backend`` protocol's docstrings, on every backend."""

    def test_capabilities(self, backend: Backend, proto: StorageBackend) -> None:
        assert proto.url == canonical_url(backend.url)
        assert proto.remote is (backend.name != "local")
        assert proto.atomic_create  # link, If-None-Match, memory's lock

    def test_missing_keys_are_not_found(self, proto: StorageBackend) -> None:
        for call in (lambda: proto.get(k("blobs/ab/nope")), lambda: proto.stat(k("blobs/ab/nope"))):
            with pytest.raises(NotFound):  # the sentinel, from every backend
                call()
        assert not proto.exists(k("blobs/ab/nope"))

    def test_put_stores_the_parts_concatenated(
        self, backend: Backend, proto: StorageBackend
    ) -> None:
        parts: list[Buffer] = [b"head-", bytearray(b"middle-"), memoryview(b"xxtail")[2:], b""]
        assert proto.put(k("blobs/ab/one"), parts) is True
        assert proto.get(k("blobs/ab/one")) == b"head-middle-tail"
        assert backend.raw.get("blobs/ab/one") == b"head-middle-tail"
        assert proto.exists(k("blobs/ab/one"))
        # The same key again (content-addressed: same bytes): skipped or rewritten.
        assert proto.put(k("blobs/ab/one"), [b"head-middle-tail"]) in (True, False)
        assert proto.get(k("blobs/ab/one")) == b"head-middle-tail"
        assert proto.put(k("empty"), []) is True and proto.get(k("empty")) == b""

    def test_a_put_that_fails_leaves_nothing_under_its_key(
        self, backend: Backend, proto: StorageBackend
    ) -> None:
        class Unreadable:
            """A part whose bytes cannot be had (the write fails after it began)."""

            def __len__(self) -> int:
                return 10

        parts: Any = [b"begun ", Unreadable()]
        with pytest.raises(TypeError):
            proto.put(k("blobs/ab/torn"), parts)
        assert not proto.exists(k("blobs/ab/torn"))
        assert backend.raw.files() == []  # no temporary file either

    def test_concurrent_puts_of_one_object_leave_it_whole(
        self, backend: Backend, proto: StorageBackend
    ) -> None:
        data = os.urandom(200_000)
        seen: list[bytes] = []
        done = threading.Event()

        def reader() -> None:  # readers see no object, or all of it
            while not done.is_set():
                with contextlib.suppress(FileNotFoundError):
                    seen.append(proto.get(k("blobs/cd/same")))

        watcher = threading.Thread(target=reader)
        watcher.start()
        try:
            results = raced(6, lambda i: proto.put(k("blobs/cd/same"), [data[:100], data[100:]]))
        finally:
            done.set()
            watcher.join()
        assert all(r in (True, False) for r in results), results
        assert True in results
        assert all(got == data for got in seen)
        assert proto.get(k("blobs/cd/same")) == data
        assert backend.raw.files() == ["blobs/cd/same"]

    def test_a_folder_is_not_an_object(self, proto: StorageBackend) -> None:
        proto.put(k("blobs/ab/x"), [b"x"])
        assert not proto.exists(k("blobs/ab"))
        for call in (lambda: proto.stat(k("blobs/ab")), lambda: proto.get(k("blobs/ab"))):
            with pytest.raises(NotFound):
                call()

    def test_create_is_create_only_and_leaves_the_object_intact(
        self, backend: Backend, proto: StorageBackend
    ) -> None:
        proto.create(k("checkpoints/c1/cp1/manifest.json"), b"original")
        with pytest.raises(AlreadyExists):  # the sentinel (S3: its 412)
            proto.create(k("checkpoints/c1/cp1/manifest.json"), b"second")
        assert proto.get(k("checkpoints/c1/cp1/manifest.json")) == b"original"
        assert backend.raw.files() == ["checkpoints/c1/cp1/manifest.json"]

    def test_concurrent_creators_exactly_one_wins(
        self, backend: Backend, proto: StorageBackend
    ) -> None:
        if not proto.atomic_create:  # every conformance backend promises it: CI fails
            missing("an atomic create-only write", f"{backend.name} is create-only against "
                    "this process's threads only")
        key = "checkpoints/c1/race/manifest.json"
        results = raced(6, lambda i: proto.create(k(key), f"writer {i}".encode()))
        winners = [i for i, r in enumerate(results) if r is None]
        losers = [r for r in results if r is not None]
        assert len(winners) == 1, results
        assert all(isinstance(r, AlreadyExists) for r in losers)
        assert proto.get(k(key)) == f"writer {winners[0]}".encode()
        assert backend.raw.files() == [key]

    def test_exists_is_fresh_and_only_for_objects(
        self, backend: Backend, proto: StorageBackend
    ) -> None:
        assert not proto.exists(k("blobs/ab/x"))
        backend.raw.put("blobs/ab/x", b"written behind its back")  # another host
        assert proto.exists(k("blobs/ab/x"))
        assert not proto.exists(k("blobs/ab")) and not proto.exists(k("blobs"))  # folders
        backend.raw.remove("blobs/ab/x")
        assert not proto.exists(k("blobs/ab/x"))

    def test_stat_gives_size_and_modification_time(self, proto: StorageBackend) -> None:
        before = datetime.now(UTC) - timedelta(seconds=5)  # S3 keeps whole seconds
        proto.put(k("blobs/ab/x"), [b"12345", b"678"])
        proto.create(k("checkpoints/c1/cp1/manifest.json"), b"{}")
        after = datetime.now(UTC) + timedelta(seconds=5)
        for key, size in (("blobs/ab/x", 8), ("checkpoints/c1/cp1/manifest.json", 2)):
            info = proto.stat(k(key))
            assert (info.key, info.size) == (key, size)
            assert info.modified is not None and before <= info.modified <= after
            assert info.modified.tzinfo is not None

    def test_delete_is_idempotent(self, backend: Backend, proto: StorageBackend) -> None:
        proto.put(k("blobs/ab/x"), [b"x"])
        proto.put(k("blobs/ab/y"), [b"y"])
        proto.delete(k("blobs/ab/x"))
        proto.delete(k("blobs/ab/x"))
        proto.delete(k("blobs/zz/never"))
        assert not proto.exists(k("blobs/ab/x")) and proto.exists(k("blobs/ab/y"))
        assert backend.raw.files() == ["blobs/ab/y"]

    def test_delete_prefix_removes_the_folder_only(
        self, backend: Backend, proto: StorageBackend
    ) -> None:
        for key in (
            "checkpoints/c1/cp1/manifest.json",
            "checkpoints/c1/cp1/deep/extra.log",
            "checkpoints/c1/cp10/manifest.json",  # a sibling sharing the name's prefix
            "checkpoints/c2/cp1/manifest.json",
        ):
            proto.put(k(key), [b"{}"])
        proto.delete_prefix("checkpoints/c1/cp1")
        proto.delete_prefix("checkpoints/c1/cp1")
        proto.delete_prefix("checkpoints/nobody")
        assert backend.raw.files() == [
            "checkpoints/c1/cp10/manifest.json",
            "checkpoints/c2/cp1/manifest.json",
        ]

    def test_scan_lists_a_folder_recursively_with_sizes(
        self, backend: Backend, proto: StorageBackend
    ) -> None:
        assert proto.scan("blobs") == []  # a new store: no folder at all
        proto.put(k("blobs/ab/one"), [b"1"])
        proto.put(k("blobs/cd/two"), [b"22"])
        proto.put(k("blobsX/ab/three"), [b"333"])  # a sibling sharing the folder's prefix
        proto.put(k("top"), [b"4444"])
        backend.raw.put("blobs/ef/four", b"55555")  # another host
        found = sorted(proto.scan("blobs"), key=lambda o: o.key)
        assert [(o.key, o.size) for o in found] == [
            ("blobs/ab/one", 1),
            ("blobs/cd/two", 2),
            ("blobs/ef/four", 5),
        ]
        assert all(isinstance(o, ObjectInfo) and o.modified is not None for o in found)
        assert [o.key for o in proto.scan("blobs/cd")] == ["blobs/cd/two"]
        assert proto.scan("checkpoints") == []

    def test_top_lists_only_objects_directly_under_the_root(
        self, backend: Backend, proto: StorageBackend
    ) -> None:
        assert proto.top() == []
        proto.put(k(".cryostash-probe-0123abcd"), [b"probe\n"])
        proto.put(k("notes.txt"), [b"hi"])
        proto.put(k("blobs/ab/x"), [b"not at the top"])
        found = sorted((o.key, o.size) for o in proto.top())
        assert found == [(".cryostash-probe-0123abcd", 6), ("notes.txt", 2)]

    def test_has_any_says_whether_a_folder_may_hold_objects(self, proto: StorageBackend) -> None:
        assert not proto.has_any("blobs")
        proto.put(k("blobs/ab/x"), [b"x"])
        assert proto.has_any("blobs") and proto.has_any("blobs/ab")
        assert not proto.has_any("blob")  # a prefix of the name is not the folder
        assert not proto.has_any("checkpoints")

    def test_a_batch_makes_its_objects_whole_and_visible_by_its_commit(
        self, backend: Backend, proto: StorageBackend
    ) -> None:
        objects = {f"blobs/{i:02x}/obj{i}": os.urandom(3000 + i) for i in range(5)}
        batch: WriteBatch = proto.batch(3)
        for key, data in objects.items():
            assert batch.add(k(key), [data[:7], memoryview(data)[7:]]) is True
        for key, data in objects.items():  # before the commit: absent, or whole
            if proto.exists(k(key)):
                assert proto.get(k(key)) == data
            else:
                assert not proto.remote  # only the local disk defers visibility
        batch.commit()
        for key, data in objects.items():
            assert proto.get(k(key)) == data
        assert temp_files(backend.raw) == []
        again = proto.batch(2)  # an object that exists: skipped, or rewritten the same
        key, data = next(iter(objects.items()))
        assert again.add(k(key), [data]) in (True, False)
        again.commit()
        assert proto.get(k(key)) == data
        proto.batch(1).commit()  # an empty batch is fine

    def test_a_discarded_batch_leaves_no_partial_object(
        self, backend: Backend, proto: StorageBackend
    ) -> None:
        batch = proto.batch(2)
        objects = {f"blobs/ab/discarded{i}": os.urandom(2000) for i in range(3)}
        for key, data in objects.items():
            batch.add(k(key), [data])
        batch.discard()
        batch.discard()  # idempotent
        for key, data in objects.items():
            if proto.exists(k(key)):  # stored at once by add (object stores): whole
                assert proto.get(k(key)) == data and proto.remote
        assert temp_files(backend.raw) == []
        if backend.name == "local":
            assert backend.raw.files() == []

    def test_mid_upload_is_reached_once_an_object_is_stored(
        self, backend: Backend, proto: StorageBackend
    ) -> None:
        keys = [f"blobs/ab/mid{i}" for i in range(3)]
        stored_then: list[list[str]] = []

        def observer(phase: str) -> None:
            if phase == "mid-upload":
                stored_then.append([k for k in keys if backend.raw.exists(k)])

        batch = proto.batch(2)
        with hooks.observe(observer):
            for key in keys:
                batch.add(k(key), [b"data"])
            batch.commit()
        assert stored_then and all(stored_then), stored_then

    def test_root_exists_once_written(self, proto: StorageBackend) -> None:
        assert not proto.root_exists()  # a new store has no root yet
        proto.put(k("blobs/ab/x"), [b"x"])
        assert proto.root_exists()

    def test_check_writable_leaves_nothing_behind(
        self, backend: Backend, proto: StorageBackend
    ) -> None:
        proto.check_writable()
        proto.check_writable()
        assert backend.raw.files() == []
        assert proto.top() == []

    def test_tidy_removes_old_empty_folders_but_the_kept_ones(
        self, backend: Backend, proto: StorageBackend
    ) -> None:
        gone = ["checkpoints/a/one/manifest.json", "checkpoints/b/three/manifest.json"]
        kept = ["checkpoints/a/two/manifest.json"]
        for key in [*gone, *kept, "checkpoints/c/four/log"]:
            proto.put(k(key), [b"x"])
        for key in [*gone, *kept]:
            proto.delete(k(key))
        assert proto.tidy("checkpoints", older_than=time.time() - 3600) == 0  # all too new
        removed = proto.tidy("checkpoints", older_than=time.time() + 60, keep=["checkpoints/a/two"])
        if backend.name == "local":  # a/one, b/three and b; a and a/two are kept
            assert removed == 3
            root = Path(backend.url)
            assert (root / "checkpoints/a/two").is_dir()
            assert not (root / "checkpoints/b").exists()
            assert not (root / "checkpoints/a/one").exists()
        else:  # object stores have no folders
            assert removed == 0
        assert proto.get(k("checkpoints/c/four/log")) == b"x"
        assert proto.tidy("nothing-here", older_than=time.time() + 60) == 0
