"""Store: one conformance class run against every backend, plus local/URL specifics."""

from __future__ import annotations

import errno
import os
import stat
import subprocess
import sys
import threading
from pathlib import Path

import blake3
import pytest

from cryostash.config import Settings
from cryostash.errors import (
    CheckpointExists,
    CheckpointNotFound,
    InvalidName,
    StorageError,
    UsageError,
)
from cryostash.storage import Manifest, Store, canonical_url, redact_url
from cryostash.storage.translate import is_transient, store_problem, translate
from tests.support.fake_engine import FakeManager, make_image
from tests.support.stores import Backend

DIGEST_A = blake3.blake3(b"alpha").hexdigest()


def _file(tmp_path: Path, data: bytes, name: str = "src") -> tuple[Path, str]:
    path = tmp_path / name
    path.write_bytes(data)
    return path, blake3.blake3(data).hexdigest()


class TestStoreConformance:
    """The storage contract; every backend must pass all of it."""

    def test_new_store_is_empty(self, backend: Backend) -> None:
        store = backend.store()
        assert store.list_checkpoints() == []
        assert list(store.list_blobs()) == []
        assert not store.manifest_exists("c1", "cp1")
        assert store.ping() >= 0

    def test_write_manifest_is_create_only(self, backend: Backend) -> None:
        store = backend.store()
        store.write_manifest("c1", "cp1", b"original")
        with pytest.raises(CheckpointExists) as err:
            store.write_manifest("c1", "cp1", b"second")
        assert str(err.value) == "checkpoint with name cp1 already exists for container c1"
        assert isinstance(err.value, FileExistsError)
        assert store.read_manifest("c1", "cp1") == b"original"
        assert backend.raw.get(backend.raw.manifest("c1", "cp1")) == b"original"

    def test_concurrent_creators_exactly_one_wins(self, backend: Backend) -> None:
        store = backend.store()
        results: dict[int, str] = {}
        barrier = threading.Barrier(6)

        def create(i: int) -> None:
            barrier.wait()
            try:
                store.write_manifest("c1", "race", f"writer {i}".encode())
                results[i] = "won"
            except CheckpointExists:
                results[i] = "lost"

        threads = [threading.Thread(target=create, args=(i,)) for i in range(6)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        winners = [i for i, r in results.items() if r == "won"]
        assert len(results) == 6 and len(winners) == 1
        assert store.read_manifest("c1", "race") == f"writer {winners[0]}".encode()

    def test_read_missing_manifest_is_not_found(self, backend: Backend) -> None:
        store = backend.store()
        with pytest.raises(CheckpointNotFound) as err:
            store.read_manifest("c1", "nope")
        assert str(err.value) == "checkpoint nope does not exist for container c1"
        assert isinstance(err.value, FileNotFoundError)

    def test_list_shows_only_folders_with_manifest_sorted(self, backend: Backend) -> None:
        store = backend.store()
        for target, name in [("web", "b2"), ("db", "x1"), ("web", "a1"), ("db", "a1")]:
            store.write_manifest(target, name, b"{}")
        raw = backend.raw
        raw.put("checkpoints/web/pending/partial.bin", b"not committed")
        raw.put("checkpoints/web/c3/.manifest.json.1234.tmp", b"interrupted write")
        raw.put("checkpoints/web/deep/er/manifest.json", b"wrong depth")
        assert store.list_checkpoints() == [
            ("db", "a1"),
            ("db", "x1"),
            ("web", "a1"),
            ("web", "b2"),
        ]
        assert store.list_checkpoints("web") == [("web", "a1"), ("web", "b2")]
        assert store.list_checkpoints("nobody") == []
        assert not store.manifest_exists("web", "pending")

    def test_checkpoint_invisible_until_its_manifest_is_written(
        self, backend: Backend, tmp_path: Path
    ) -> None:
        store = backend.store()
        for i in range(3):
            path, digest = _file(tmp_path, f"blob {i}".encode(), f"f{i}")
            store.put_blob(digest, path)
        assert store.list_checkpoints() == []
        assert not store.manifest_exists("c1", "cp1")
        store.write_manifest("c1", "cp1", b"{}")
        assert store.list_checkpoints() == [("c1", "cp1")]
        assert store.manifest_exists("c1", "cp1")

    def test_a_create_writes_its_manifest_only_after_all_its_blobs(
        self, backend: Backend, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        files = make_image(tmp_path / "image")
        seen: dict[str, object] = {}
        real_write = Store.write_manifest

        def spying_write(store: Store, target: str, name: str, data: bytes) -> None:
            manifest = Manifest.from_bytes(data, target=target, name=name)
            digests = {d for entry in manifest.files for d in entry.blobs}
            raw = backend.raw
            seen["digests"] = digests
            seen["absent"] = sorted(d for d in digests if not raw.exists(raw.blob(d)))
            seen["listed"] = store.list_checkpoints()
            real_write(store, target, name, data)

        monkeypatch.setattr(Store, "write_manifest", spying_write)
        settings = Settings(
            store_url=backend.url,
            catalog_url=f"sqlite:///{tmp_path / 'catalog.db'}",
            scratch_dir=tmp_path / "scratch",
            host="host-a",
            storage_options=backend.storage_options,
        )
        with FakeManager(settings) as mgr:
            mgr.create("app", "cp1", locator=str(tmp_path / "image"))
        assert seen["absent"] == [] and seen["listed"] == []
        assert seen["digests"] == {blake3.blake3(d).hexdigest() for d in files.values() if d}
        store = backend.store()
        assert store.list_checkpoints() == [("app", "cp1")]
        assert set(store.list_blobs()) == seen["digests"]

    def test_delete_manifest_removes_folder_and_is_idempotent(self, backend: Backend) -> None:
        store = backend.store()
        store.write_manifest("c1", "cp1", b"{}")
        store.write_manifest("c1", "cp2", b"{}")
        backend.raw.put("checkpoints/c1/cp1/extra.log", b"log")
        store.delete_manifest("c1", "cp1")
        assert store.list_checkpoints() == [("c1", "cp2")]
        assert not backend.raw.exists("checkpoints/c1/cp1/extra.log")
        store.delete_manifest("c1", "cp1")
        store.delete_manifest("c1", "never")
        store.write_manifest("c1", "cp1", b"again")  # the name is free again
        assert store.read_manifest("c1", "cp1") == b"again"

    def test_blob_put_get_has_delete_are_idempotent(self, backend: Backend, tmp_path: Path) -> None:
        store = backend.store()
        data = os.urandom(3000)
        src, digest = _file(tmp_path, data)
        assert not store.has_blob(digest)
        store.put_blob(digest, src)
        store.put_blob(digest, src)
        assert store.has_blob(digest)
        assert store.blob_size(digest) == len(data)
        assert list(store.list_blobs()) == [digest]
        out = tmp_path / "out" / "copy"
        out.parent.mkdir()
        store.get_blob(digest, out)
        assert out.read_bytes() == data
        with store.open_blob(digest) as fh:
            assert fh.read() == data
        assert backend.raw.get(backend.raw.blob(digest)) == data
        store.delete_blob(digest)
        store.delete_blob(digest)
        assert not store.has_blob(digest)
        assert list(store.list_blobs()) == []

    def test_missing_blob_is_not_found(self, backend: Backend, tmp_path: Path) -> None:
        store = backend.store()
        message = f"blob {DIGEST_A} does not exist in store {store.url}"
        for call in (
            lambda: store.open_blob(DIGEST_A),
            lambda: store.blob_size(DIGEST_A),
            lambda: store.get_blob(DIGEST_A, tmp_path / "x"),
        ):
            with pytest.raises(CheckpointNotFound) as err:
                call()
            assert str(err.value) == message
        assert not (tmp_path / "x").exists()

    def test_list_blobs_sorted_and_ignores_foreign_objects(
        self, backend: Backend, tmp_path: Path
    ) -> None:
        store = backend.store()
        digests = []
        for i in range(4):
            path, digest = _file(tmp_path, f"content {i}".encode(), f"f{i}")
            store.put_blob(digest, path)
            digests.append(digest)
        raw = backend.raw
        raw.put(f"blobs/{digests[0][:2]}/.{digests[0]}.abc.tmp", b"temp")
        raw.put(f"blobs/zz/{digests[1]}", b"wrong fan-out folder")
        raw.put("blobs/README", b"not a blob")
        assert list(store.list_blobs()) == sorted(digests)

    @pytest.mark.parametrize(
        "bad", ["abc", "../../etc/passwd", DIGEST_A.upper(), DIGEST_A + "0", "g" * 64]
    )
    def test_bad_digest_is_rejected_before_any_io(
        self, backend: Backend, tmp_path: Path, bad: str
    ) -> None:
        store = backend.store()
        src, _ = _file(tmp_path, b"x")
        for call in (
            lambda: store.has_blob(bad),
            lambda: store.put_blob(bad, src),
            lambda: store.get_blob(bad, tmp_path / "out"),
            lambda: store.open_blob(bad),
            lambda: store.delete_blob(bad),
            lambda: store.blob_size(bad),
        ):
            with pytest.raises(UsageError, match="invalid blob digest"):
                call()
        assert backend.raw.files() == []

    @pytest.mark.parametrize(("target", "name"), [("../x", "cp1"), ("c1", ".."), ("c1", "a/b")])
    def test_bad_target_or_name_is_rejected(self, backend: Backend, target: str, name: str) -> None:
        store = backend.store()
        with pytest.raises(InvalidName):
            store.write_manifest(target, name, b"{}")
        with pytest.raises(InvalidName):
            store.read_manifest(target, name)
        assert backend.raw.files() == []

    def test_check_writable_leaves_nothing_behind(self, backend: Backend) -> None:
        store = backend.store()
        store.check_writable()
        assert backend.raw.files() == []
        assert store.list_checkpoints() == []

    def test_backend_failures_are_translated(
        self, backend: Backend, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        store = backend.store()
        store.write_manifest("c1", "cp1", b"{}")

        def fail(exc: Exception) -> None:
            def raiser(*args: object, **kwargs: object) -> None:
                raise exc

            # The local disk is read without fsspec (start-up time of restore).
            if store.is_local:
                monkeypatch.setattr("cryostash.storage.localfs.read_file", raiser)
            else:
                monkeypatch.setattr(store.fs, "cat_file", raiser)

        fail(PermissionError(13, "Access Denied"))
        with pytest.raises(StorageError, match="permission denied") as err:
            store.read_manifest("c1", "cp1")
        assert not err.value.transient and store.url in str(err.value)
        fail(TimeoutError("read timed out"))
        with pytest.raises(StorageError, match="temporary failure") as err:
            store.read_manifest("c1", "cp1")
        assert err.value.transient
        fail(OSError(errno.EIO, "disk on fire"))
        with pytest.raises(StorageError, match="disk on fire") as err:
            store.read_manifest("c1", "cp1")
        assert not err.value.transient

    def test_url_is_credential_free(self, backend: Backend) -> None:
        store = backend.store()
        assert store.url == canonical_url(backend.url)
        assert "testing" not in store.url
        assert repr(store) == f"Store({store.url!r})"


# -- local disk specifics -------------------------------------------------------------------


def test_checkpoint_dir_that_is_a_file_is_a_usage_error(tmp_path: Path) -> None:
    path = tmp_path / "afile"
    path.write_text("x")
    with pytest.raises(UsageError) as err:
        Store(str(path))
    assert str(err.value) == f"{path} exists and is not a directory"


def test_local_root_is_created_on_first_write(tmp_path: Path) -> None:
    root = tmp_path / "a" / "b" / "store"
    store = Store(str(root))
    assert not store.exists() and not root.exists()
    assert store.list_checkpoints() == []
    store.write_manifest("c1", "cp1", b"{}")
    assert store.exists() and (root / "checkpoints/c1/cp1/manifest.json").is_file()


def test_unwritable_root_fails_check_writable(tmp_path: Path) -> None:
    # Tests run as root, where chmod does not stop writes: a root under a regular
    # FILE cannot be created by anyone.
    blocker = tmp_path / "blocker"
    blocker.write_text("x")
    root = blocker / "store"
    store = Store(str(root))
    with pytest.raises(StorageError) as err:
        store.check_writable()
    assert str(err.value).startswith(f"store {root} is not writable: ")
    with pytest.raises(StorageError) as err2:  # not CheckpointExists
        store.write_manifest("c1", "cp1", b"{}")
    assert not isinstance(err2.value, CheckpointExists)


def test_local_manifest_write_leaves_no_temporary_file(tmp_path: Path) -> None:
    store = Store(str(tmp_path / "s"))
    store.write_manifest("c1", "cp1", b"{}")
    with pytest.raises(CheckpointExists):
        store.write_manifest("c1", "cp1", b"other")
    assert os.listdir(tmp_path / "s/checkpoints/c1/cp1") == ["manifest.json"]


def test_local_manifest_write_failure_leaves_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = Store(str(tmp_path / "s"))

    def broken_link(src: str, dst: str) -> None:
        raise OSError(errno.EIO, "I/O error")

    monkeypatch.setattr(os, "link", broken_link)
    with pytest.raises(StorageError, match="I/O error"):
        store.write_manifest("c1", "cp1", b"{}")
    assert os.listdir(tmp_path / "s/checkpoints/c1/cp1") == []
    assert not store.manifest_exists("c1", "cp1")


def test_local_manifest_write_interrupted_leaves_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = Store(str(tmp_path / "s"))

    real_fsync = os.fsync

    def interrupted(fd: int) -> None:
        if stat.S_ISREG(os.fstat(fd).st_mode):  # Ctrl-C while syncing the new manifest
            raise KeyboardInterrupt
        real_fsync(fd)

    monkeypatch.setattr(os, "fsync", interrupted)
    with pytest.raises(KeyboardInterrupt):
        store.write_manifest("c1", "cp1", b"{}")
    monkeypatch.undo()
    assert os.listdir(tmp_path / "s/checkpoints/c1/cp1") == []


def test_local_blob_put_is_atomic_on_failure(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = Store(str(tmp_path / "s"))
    src, digest = _file(tmp_path, b"payload")

    def broken_replace(src: str, dst: str) -> None:
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(os, "replace", broken_replace)
    with pytest.raises(StorageError, match="No space left"):
        store.put_blob(digest, src)
    monkeypatch.undo()
    assert not store.has_blob(digest)
    assert os.listdir(tmp_path / "s/blobs" / digest[:2]) == []


# -- URLs -------------------------------------------------------------------------------------


@pytest.mark.parametrize("url", ["xyz://bucket/x", "nosuchproto::s3://bucket/x"])
def test_unknown_protocol_is_a_usage_error(url: str) -> None:
    with pytest.raises(UsageError, match=r"unknown store protocol '(xyz|nosuchproto)' in URL"):
        Store(url)


@pytest.mark.parametrize("url", ["://x", "", "   "])
def test_malformed_url_is_a_usage_error(url: str) -> None:
    with pytest.raises(UsageError):
        Store(url)


def test_redact_url_strips_credentials() -> None:
    assert redact_url("s3://AKIA:secret@bucket/p?sig=x&region=eu") == "s3://bucket/p?region=eu"
    assert redact_url("simplecache::sftp://alice:pw@host/srv") == "simplecache::sftp://host/srv"
    assert redact_url("/plain/path") == "/plain/path"
    assert redact_url("s3://") == "s3://"


def test_canonical_url_of_local_paths(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    assert canonical_url("rel/store/") == str(tmp_path / "rel/store")
    assert canonical_url(f"file://{tmp_path}/x") == f"{tmp_path}/x"
    assert canonical_url(f"local://{tmp_path}/x/") == f"{tmp_path}/x"
    assert canonical_url("file://rel/x") == str(tmp_path / "rel/x")
    assert canonical_url("s3://k:s@bucket/prefix/") == "s3://bucket/prefix"
    assert Store("rel/store").url == str(tmp_path / "rel/store")


class _FakeClientError(Exception):
    def __init__(self, code: str) -> None:
        super().__init__(f"An error occurred ({code})")
        self.response = {"Error": {"Code": code}}


def test_translate_understands_s3_error_codes() -> None:
    lost = OSError(errno.EINVAL, "precondition")
    lost.__cause__ = _FakeClientError("PreconditionFailed")
    err = translate(
        lost, op="write", where="manifest", url="s3://b", exists=lambda: CheckpointExists("taken")
    )
    assert isinstance(err, CheckpointExists)
    assert is_transient(_FakeClientError("SlowDown"))
    assert is_transient(_FakeClientError("ConditionalRequestConflict"))
    assert not is_transient(_FakeClientError("NoSuchBucket"))
    denied = translate(_FakeClientError("AccessDenied"), op="read", where="x", url="s3://b")
    assert isinstance(denied, StorageError) and "permission denied" in str(denied)


class EndpointConnectionError(Exception):
    """Named like botocore's: what an unreachable endpoint raises."""


def test_a_store_that_cannot_be_used_is_named_as_such() -> None:
    def err(exc: Exception) -> StorageError:
        out = translate(exc, op="read", where="manifest of a1/b1", url="s3://b/p")
        assert isinstance(out, StorageError)
        return out

    missing_bucket = FileNotFoundError("The specified bucket does not exist")
    missing_bucket.__cause__ = _FakeClientError("NoSuchBucket")
    gone = translate(
        missing_bucket, op="read", where="manifest of a1/b1", url="s3://b/p",
        not_found=lambda: CheckpointNotFound("no such checkpoint"),
    )  # fmt: skip
    assert isinstance(gone, StorageError)  # not "checkpoint does not exist"
    assert str(gone) == "cannot read manifest of a1/b1 in store s3://b/p: the bucket does not exist"
    for code in ("InvalidAccessKeyId", "SignatureDoesNotMatch", "ExpiredToken"):
        rejected = err(_FakeClientError(code))
        assert f"the credentials were rejected ({code}: " in str(rejected)
        assert not rejected.transient
    down = err(EndpointConnectionError('Could not connect to the endpoint URL: "http://x"'))
    assert "cannot connect to the endpoint: Could not connect" in str(down)
    assert down.transient
    refused = err(ConnectionRefusedError(errno.ECONNREFUSED, "Connection refused"))
    assert "cannot connect to the endpoint" in str(refused) and refused.transient
    assert store_problem(_FakeClientError("NoSuchKey")) is None
    assert store_problem(PermissionError("Access Denied")) is None


def test_a_local_store_is_used_without_importing_fsspec(tmp_path: Path) -> None:
    # Start-up time: create, restore and ls on the local disk never load fsspec.
    code = (
        "import sys; from cryostash.storage import Store;"
        f"s = Store({str(tmp_path / 'store')!r}); s.check_writable();"
        "s.write_manifest('c1', 'cp1', b'{}'); assert s.read_manifest('c1', 'cp1') == b'{}';"
        "assert s.manifest_exists('c1', 'cp1') and s.exists();"
        "assert 'fsspec' not in sys.modules, sorted(sys.modules)"
    )
    subprocess.run([sys.executable, "-c", code], check=True)
