"""The store conformance suite: the :class:`~cryostash.store.Store` API production
uses (manager, transfers, gc, verify, rebuild), on every backend of the ``backend`` fixture:
manifests, chunks, the inventory, strays, tidy, health, and the messages of its errors.

The rest of the storage suite: ``test_backend.py`` (the Backend protocol),
``test_store_wrappers.py`` (retrying and caching), ``test_store_edges.py`` (one backend's
specifics, URLs, error translation).
"""

from __future__ import annotations

import errno
import os
import time
from pathlib import Path

import blake3
import pytest

from cryostash.config import Settings
from cryostash.errors import (
    CheckpointExists,
    CheckpointNotFound,
    IntegrityError,
    InvalidName,
    ObjectNotFound,
    StorageError,
    UsageError,
)
from cryostash.store import Manifest, ManifestMismatch, Store
from cryostash.store.manifests import Manifests
from cryostash.urls import canonical_url, strip_credentials
from tests.support.fake_engine import FakeManager, make_image
from tests.support.storage_helpers import (
    DIGEST_A,
    ONCE,
    FakeFlakyBackend,
    encoded,
    manifest_bytes,
    raced,
    store_chunks,
    temp_files,
)
from tests.support.stores import Backend


class TestStoreConformance:
    """The repository API production uses (manager, transfers, gc, verify, rebuild)."""

    def test_new_store_is_empty(self, backend: Backend) -> None:
        store = backend.store()
        inventory = store.maintenance.inventory()
        assert (dict(inventory.manifests), dict(inventory.blobs), inventory.strays) == (
            {},
            {},
            (),
        )
        assert not store.manifests.exists("c1", "cp1")
        assert not store.chunks.has(DIGEST_A)
        assert store.chunks.holds_none()
        assert not store.exists()
        assert (store.retries, store.bytes_failed) == (0, 0)

    def test_capabilities_and_url(self, backend: Backend) -> None:
        store = backend.store()
        assert store.url == canonical_url(backend.url) == store.backend.url
        assert "testing" not in store.url and store.url == strip_credentials(store.url)
        assert repr(store) == f"Store({store.url!r})"
        assert store.remote is (backend.name != "local")
        assert store.supports_atomic_create

    def test_write_manifest_is_create_only(self, backend: Backend) -> None:
        store = backend.store()
        store.manifests.write("c1", "cp1", b"original")
        assert store.manifests.exists("c1", "cp1")
        with pytest.raises(CheckpointExists) as err:
            store.manifests.write("c1", "cp1", b"second")
        assert str(err.value) == "checkpoint with name cp1 already exists for container c1"
        assert isinstance(err.value, FileExistsError)
        assert store.manifests.read("c1", "cp1") == b"original"
        assert backend.raw.get(backend.raw.manifest("c1", "cp1")) == b"original"
        assert store.retries == 0  # a taken name is not retried

    def test_concurrent_creators_exactly_one_wins(self, backend: Backend) -> None:
        store = backend.store()
        results = raced(6, lambda i: store.manifests.write("c1", "race", f"writer {i}".encode()))
        winners = [i for i, r in enumerate(results) if r is None]
        assert len(winners) == 1, results
        assert all(isinstance(r, CheckpointExists) for r in results if r is not None)
        assert store.manifests.read("c1", "race") == f"writer {winners[0]}".encode()

    def test_read_missing_manifest_is_not_found(self, backend: Backend) -> None:
        store = backend.store()
        for call in (
            lambda: store.manifests.read("c1", "nope"),
            lambda: store.manifests.load("c1", "nope"),
        ):
            with pytest.raises(CheckpointNotFound) as err:
                call()
            assert str(err.value) == "checkpoint nope does not exist for container c1"
            assert isinstance(err.value, FileNotFoundError) and err.value.exit_code == 3

    def test_load_manifest_parses_and_checks_the_catalog_digest(self, backend: Backend) -> None:
        store = backend.store()
        data = manifest_bytes("web", "n1")
        store.manifests.write("web", "n1", data)
        digest = blake3.blake3(data).hexdigest()
        loaded = store.manifests.load("web", "n1", expected=digest)
        assert (loaded.data, loaded.digest) == (data, digest)
        assert (loaded.manifest.target, loaded.manifest.name) == ("web", "n1")
        assert store.manifests.load("web", "n1").digest == digest  # None: not checked
        with pytest.raises(ManifestMismatch, match="does not match the catalog") as err:
            store.manifests.load("web", "n1", expected=DIGEST_A)
        assert err.value.stored.digest == digest
        store.manifests.write("web", "n2", data)  # the bytes of another checkpoint
        with pytest.raises(IntegrityError, match="manifest of web/n2 is corrupt"):
            store.manifests.load("web", "n2")
        store.manifests.write("web", "n3", b"garbage")
        with pytest.raises(IntegrityError, match="not valid JSON"):
            store.manifests.load("web", "n3")

    def test_checkpoint_invisible_until_its_manifest_is_written(self, backend: Backend) -> None:
        store = backend.store()
        store_chunks(store, b"blob 0", b"blob 1", b"blob 2")
        assert dict(store.maintenance.inventory().manifests) == {}
        assert not store.manifests.exists("c1", "cp1")
        store.manifests.write("c1", "cp1", b"{}")
        assert list(store.maintenance.inventory().manifests) == [("c1", "cp1")]
        assert store.manifests.exists("c1", "cp1")

    def test_a_create_writes_its_manifest_only_after_all_its_blobs(
        self, backend: Backend, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        files = make_image(tmp_path / "image")
        seen: dict[str, object] = {}
        real_write = Manifests.write

        def spying_write(manifests: Manifests, target: str, name: str, data: bytes) -> None:
            manifest = Manifest.from_bytes(data, target=target, name=name)
            digests = {d for entry in manifest.files for d in entry.blobs}
            raw = backend.raw
            seen["digests"] = digests
            seen["absent"] = sorted(d for d in digests if not raw.exists(raw.blob(d)))
            seen["listed"] = dict(backend.store().maintenance.inventory().manifests)
            real_write(manifests, target, name, data)

        monkeypatch.setattr(Manifests, "write", spying_write)
        settings = Settings(
            store_url=backend.url,
            catalog_url=f"sqlite:///{tmp_path / 'catalog.db'}",
            scratch_dir=tmp_path / "scratch",
            host="host-a",
            storage_options=backend.storage_options,
        )
        with FakeManager(settings) as mgr:
            mgr.create("app", "cp1", locator=str(tmp_path / "image"))
        assert seen["absent"] == [] and seen["listed"] == {}
        assert seen["digests"] == {blake3.blake3(d).hexdigest() for d in files.values() if d}
        inventory = backend.store().maintenance.inventory()
        assert list(inventory.manifests) == [("app", "cp1")]
        assert set(inventory.blobs) == seen["digests"] and inventory.strays == ()

    def test_delete_manifest_removes_folder_and_is_idempotent(self, backend: Backend) -> None:
        store = backend.store()
        store.manifests.write("c1", "cp1", b"{}")
        store.manifests.write("c1", "cp10", b"{}")
        backend.raw.put("checkpoints/c1/cp1/extra.log", b"log")
        store.manifests.delete("c1", "cp1")
        assert list(store.maintenance.inventory().manifests) == [("c1", "cp10")]
        assert not backend.raw.exists("checkpoints/c1/cp1/extra.log")
        store.manifests.delete("c1", "cp1")
        store.manifests.delete("c1", "never")
        store.manifests.write("c1", "cp1", b"again")  # the name is free again
        assert store.manifests.read("c1", "cp1") == b"again"

    def test_chunks_write_read_verify_and_delete(self, backend: Backend) -> None:
        store = backend.store()
        data = os.urandom(3000) + bytes(3000)
        digest, parts = encoded(data)
        stored = b"".join(parts)
        assert not store.chunks.has(digest)
        batch = store.chunks.batch(jobs=2)
        assert not batch.present(digest)
        assert batch.add(digest, parts) is True
        batch.commit()
        assert store.chunks.has(digest) and not store.chunks.holds_none()
        assert store.chunks.read_object(digest) == stored  # encoded, as stored
        assert backend.raw.get(backend.raw.blob(digest)) == stored
        assert store.chunks.read(digest) == data
        assert store.chunks.read(digest, len(data)) == data
        fetched = store.chunks.fetch(digest, len(data), what="blob X of file F")
        assert bytes(fetched.plain) == data and fetched.stored_size == len(stored)
        assert (fetched.from_cache, fetched.cached) == (False, False)
        # A second create asks the store (where asking is cheaper) or is told by add.
        again = store.chunks.batch()
        assert again.present(digest) or again.add(digest, parts) is False
        again.commit()
        assert list(store.maintenance.inventory().blobs) == [digest]
        store.chunks.delete(digest)
        store.chunks.delete(digest)
        assert not store.chunks.has(digest)
        assert dict(store.maintenance.inventory().blobs) == {}

    def test_a_discarded_chunk_batch_names_no_chunk(self, backend: Backend) -> None:
        store = backend.store()
        digest, parts = encoded(b"never committed")
        batch = store.chunks.batch()
        batch.add(digest, parts)
        batch.discard()
        if store.chunks.has(digest):  # object stores: stored whole at once (the caller undoes)
            assert store.remote and store.chunks.read(digest) == b"never committed"
        assert temp_files(backend.raw) == []

    def test_missing_blob_is_object_not_found(self, backend: Backend) -> None:
        store = backend.store()
        message = f"blob {DIGEST_A} does not exist in store {store.url}"
        for call in (
            lambda: store.chunks.read_object(DIGEST_A),
            lambda: store.chunks.read(DIGEST_A),
            lambda: store.chunks.fetch(DIGEST_A, 5, what="blob of file F"),
        ):
            with pytest.raises(ObjectNotFound) as err:
                call()
            assert str(err.value) == message
            assert isinstance(err.value, FileNotFoundError) and err.value.exit_code == 3
            assert not isinstance(err.value, CheckpointNotFound)

    def test_a_corrupt_chunk_is_refused(self, backend: Backend) -> None:
        store = backend.store()
        (digest,) = store_chunks(store, b"alpha" * 100)
        assert store.chunks.read(digest, 500) == b"alpha" * 100
        with pytest.raises(IntegrityError, match=f"blob {digest} is corrupt: "):
            store.chunks.read(digest, 499)  # not the size the manifest records
        raw = backend.raw
        raw.flip_byte(raw.blob(digest), offset=-1)
        with pytest.raises(IntegrityError, match=f"blob {digest} is corrupt"):
            store.chunks.read(digest)
        with pytest.raises(IntegrityError, match="blob X of file F is corrupt"):
            store.chunks.fetch(digest, 500, what="blob X of file F")
        raw.put(raw.blob(digest), b"")
        with pytest.raises(IntegrityError, match="empty object"):
            store.chunks.read(digest)

    @pytest.mark.parametrize(
        "bad", ["abc", "../../etc/passwd", DIGEST_A.upper(), DIGEST_A + "0", "g" * 64]
    )
    def test_bad_digest_is_rejected_before_any_io(self, backend: Backend, bad: str) -> None:
        store = backend.store()
        batch = store.chunks.batch()
        for call in (
            lambda: store.chunks.has(bad),
            lambda: store.chunks.read_object(bad),
            lambda: store.chunks.read(bad),
            lambda: store.chunks.fetch(bad, None, what="x"),
            lambda: store.chunks.delete(bad),
            lambda: batch.add(bad, [b"\x00x"]),
        ):
            with pytest.raises(UsageError, match="invalid blob digest"):
                call()
        batch.commit()
        assert backend.raw.files() == []

    @pytest.mark.parametrize(("target", "name"), [("../x", "cp1"), ("c1", ".."), ("c1", "a/b")])
    def test_bad_target_or_name_is_rejected(self, backend: Backend, target: str, name: str) -> None:
        store = backend.store()
        for call in (
            lambda: store.manifests.write(target, name, b"{}"),
            lambda: store.manifests.read(target, name),
            lambda: store.manifests.load(target, name),
            lambda: store.manifests.exists(target, name),
            lambda: store.manifests.delete(target, name),
        ):
            with pytest.raises(InvalidName):
                call()
        assert backend.raw.files() == []

    def test_inventory_sorts_manifests_chunks_and_strays(self, backend: Backend) -> None:
        store = backend.store()
        for target, name in [("web", "b2"), ("db", "x1"), ("web", "a1"), ("db", "a1")]:
            store.manifests.write(target, name, b"{}")
        digests = store_chunks(store, *(f"content {i}".encode() for i in range(4)))
        raw = backend.raw
        strays = [
            ".cryostash-probe-0123abcd",  # an interrupted check_writable
            f"blobs/{digests[0][:2]}/.{digests[0]}.abc123.tmp",  # an interrupted write
            f"blobs/zz/{digests[1]}",  # wrong fan-out folder
            "blobs/README",
            "checkpoints/web/a1/.manifest.json.1234.tmp",
            "checkpoints/web/c3/.manifest.json.1234.tmp",
            "checkpoints/web/deep/er/manifest.json",  # wrong depth
            "checkpoints/web/pending/partial.bin",  # an interrupted create
        ]
        for path in strays:
            raw.put(path, b"stray")
        raw.put("checkpoints/web/a1/extra.log", b"beside a manifest: left alone")
        raw.put("notes.txt", b"outside the layout: not looked at")
        inventory = store.maintenance.inventory()
        assert sorted(inventory.manifests) == [
            ("db", "a1"),
            ("db", "x1"),
            ("web", "a1"),
            ("web", "b2"),
        ]
        assert sorted(inventory.blobs) == sorted(digests)
        assert [s.path for s in inventory.strays] == sorted(strays)
        one = inventory.blobs[digests[2]]
        assert one.path == raw.blob(digests[2]) and one.size == len(raw.get(one.path))
        assert one.modified is not None and inventory.manifests[("db", "a1")].size == 2
        assert not store.manifests.exists("web", "pending")

    def test_delete_stray_removes_only_strays_of_the_layout(self, backend: Backend) -> None:
        store = backend.store()
        raw = backend.raw
        for path in ("checkpoints/web/pending/partial.bin", ".cryostash-probe-0a1b", "notes"):
            raw.put(path, b"x")
        for stray in store.maintenance.inventory().strays:
            store.maintenance.delete_stray(stray.path)
        store.maintenance.delete_stray("checkpoints/web/pending/partial.bin")  # missing is fine
        assert raw.files() == ["notes"] and store.maintenance.inventory().strays == ()
        for path in ("notes", "../outside", "checkpoints/../notes", "blobs//x", ""):
            with pytest.raises(UsageError, match="refusing to delete"):
                store.maintenance.delete_stray(path)
        assert raw.files() == ["notes"]

    def test_tidy_removes_empty_checkpoint_folders(self, backend: Backend) -> None:
        store = backend.store()
        for name in ("cp1", "cp2"):
            store.manifests.write("c1", name, b"{}")
        store.manifests.write("c2", "cp3", b"{}")
        for target, name in (("c1", "cp1"), ("c1", "cp2"), ("c2", "cp3")):
            store.manifests.delete(target, name)
        removed = store.maintenance.tidy(older_than=time.time() + 60, keep=[("c1", "cp2")])
        assert removed == (1 if backend.name == "local" else 0)  # c2 (cp* are gone)
        if backend.name == "local":
            assert sorted(os.listdir(Path(backend.url) / "checkpoints")) == ["c1"]
        assert store.maintenance.tidy(older_than=time.time() + 60) >= 0

    def test_exists_and_check_writable(self, backend: Backend) -> None:
        store = backend.store()
        assert not store.exists()
        store.check_writable()
        assert backend.raw.files() == []
        store.manifests.write("c1", "cp1", b"{}")
        assert store.exists()

    def test_backend_failures_are_translated(self, backend: Backend) -> None:
        fake = FakeFlakyBackend(backend.open())
        store = Store.over(fake, ONCE)
        store.manifests.write("c1", "cp1", b"{}")

        fake.fail("get", PermissionError(13, "Access Denied"))
        with pytest.raises(StorageError, match="permission denied") as err:
            store.manifests.read("c1", "cp1")
        assert not err.value.transient and store.url in str(err.value)
        fake.fail("get", TimeoutError("read timed out"))
        with pytest.raises(StorageError, match="temporary failure") as err:
            store.manifests.read("c1", "cp1")
        assert err.value.transient
        fake.fail("get", OSError(errno.EIO, "disk on fire"))
        with pytest.raises(StorageError, match="disk on fire") as err:
            store.manifests.read("c1", "cp1")
        assert not err.value.transient
        fake.fail("exists", OSError(errno.EIO, "disk on fire"))
        with pytest.raises(StorageError, match=r"cannot check blob \w+ in store .*disk on fire"):
            store.chunks.has(DIGEST_A)
        fake.fail("check_writable", PermissionError(13, "Access Denied"))
        with pytest.raises(StorageError) as err:
            store.check_writable()
        assert str(err.value) == f"store {store.url} is not writable: permission denied: " + (
            "[Errno 13] Access Denied"
        )
        fake.fail("get", TypeError("a bug"))  # bugs are not storage errors
        with pytest.raises(TypeError, match="a bug"):
            store.manifests.read("c1", "cp1")
        assert store.manifests.read("c1", "cp1") == b"{}"
