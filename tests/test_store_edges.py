"""What only one backend promises, then URLs and error translation: the local disk's
crash safety (atomic, synced writes; no fsspec import), S3's messages for a store that
cannot be used (against moto), store URLs, and the translation of backend errors.
"""

from __future__ import annotations

import errno
import os
import stat
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from cryostash.errors import CheckpointExists, CheckpointNotFound, StorageError, UsageError
from cryostash.objects.errors import (
    AlreadyExists,
    NotFound,
    Permanent,
    PermissionDenied,
    Transient,
)
from cryostash.objects.fsspec_errors import classify
from cryostash.objects.local import LocalBackend
from cryostash.objects.location import open_backend
from cryostash.store import Store
from cryostash.store.translate import translate
from cryostash.urls import canonical_url, strip_credentials
from tests.support.faults import FaultPlan, fail
from tests.support.processes import free_port
from tests.support.storage_helpers import ONCE, encoded, temp_files, trace_renames
from tests.support.storage_helpers import key as k
from tests.support.stores import MotoServer, RawStore

# -- the local disk ---------------------------------------------------------------------------


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
    assert dict(store.maintenance.inventory().manifests) == {} and store.chunks.holds_none()
    assert not root.exists()
    store.manifests.write("c1", "cp1", b"{}")
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
        store.manifests.write("c1", "cp1", b"{}")
    assert not isinstance(err2.value, CheckpointExists)


def test_local_manifest_write_leaves_no_temporary_file(tmp_path: Path) -> None:
    store = Store(str(tmp_path / "s"))
    store.manifests.write("c1", "cp1", b"{}")
    with pytest.raises(CheckpointExists):
        store.manifests.write("c1", "cp1", b"other")
    assert os.listdir(tmp_path / "s/checkpoints/c1/cp1") == ["manifest.json"]


def test_local_manifest_write_failure_leaves_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = Store(str(tmp_path / "s"), retry=ONCE)

    def broken_link(src: str, dst: str) -> None:
        raise OSError(errno.EIO, "I/O error")

    monkeypatch.setattr(os, "link", broken_link)
    with pytest.raises(StorageError, match="I/O error"):
        store.manifests.write("c1", "cp1", b"{}")
    assert os.listdir(tmp_path / "s/checkpoints/c1/cp1") == []
    assert not store.manifests.exists("c1", "cp1")


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
        store.manifests.write("c1", "cp1", b"{}")
    monkeypatch.undo()
    assert os.listdir(tmp_path / "s/checkpoints/c1/cp1") == []


@pytest.mark.parametrize("failing", ["fdatasync", "rename"])
def test_local_chunk_writes_are_atomic_on_failure(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, failing: str
) -> None:
    store = Store(str(tmp_path / "s"), retry=ONCE)
    digest, parts = encoded(b"payload" * 100)

    def broken(*args: object) -> None:
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(os, failing, broken)
    batch = store.chunks.batch()
    batch.add(digest, parts)
    with pytest.raises(StorageError, match="No space left"):
        batch.commit()
    with pytest.raises(Permanent, match="No space left"):  # the sentinel, the OSError its cause
        LocalBackend(str(tmp_path / "s")).put(k("blobs/ab/x"), [b"x"])
    monkeypatch.undo()
    assert not store.chunks.has(digest)
    assert [p for p in (tmp_path / "s").rglob("*") if p.is_file()] == []


def test_local_batch_names_each_object_only_after_its_sync(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    backend = LocalBackend(str(tmp_path / "s"))
    renamed = trace_renames(monkeypatch)
    batch = backend.batch(3)
    for i in range(6):
        batch.add(k(f"blobs/{i:02x}/obj"), [bytes([i]) * 100])
    assert renamed == [] and not backend.exists(k("blobs/00/obj"))  # invisible until commit
    batch.commit()
    assert len(renamed) == 6 and all(was_synced for _, was_synced in renamed)
    assert backend.put(k("blobs/ab/single"), [b"x"]) and renamed[-1][1]
    assert temp_files(RawStore(_local_fs(), str(tmp_path / "s"))) == []


def _local_fs() -> Any:
    from fsspec.implementations.local import LocalFileSystem

    return LocalFileSystem()


def test_a_local_store_is_used_without_importing_fsspec(tmp_path: Path) -> None:
    # Start-up time: create, restore and ls on the local disk never load fsspec.
    code = (
        "import sys, blake3; from cryostash.store import Store, codec;"
        f"s = Store({str(tmp_path / 'store')!r}); s.check_writable();"
        "s.manifests.write('c1', 'cp1', b'{}'); assert s.manifests.read('c1', 'cp1') == b'{}';"
        "assert s.manifests.exists('c1', 'cp1') and s.exists();"
        "d = blake3.blake3(b'x').hexdigest(); b = s.chunks.batch();"
        "b.add(d, codec.encode(b'x', None)); b.commit(); assert s.chunks.read(d, 1) == b'x';"
        "assert list(s.maintenance.inventory().blobs) == [d];"
        "assert 'fsspec' not in sys.modules, sorted(sys.modules)"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


# -- S3 (moto): a store that cannot be used is named as such ----------------------------------


def test_s3_missing_bucket_is_named(moto_server: MotoServer) -> None:
    store = Store("s3://no-such-bucket-for-cryostash/root", moto_server.options(), retry=ONCE)
    with pytest.raises(StorageError) as err:
        store.check_writable()
    assert str(err.value) == f"store {store.url}: the bucket does not exist"
    with pytest.raises(StorageError) as gone:  # not "checkpoint does not exist"
        store.manifests.read("a1", "b1")
    assert str(gone.value) == (
        f"cannot read manifest of a1/b1 in store {store.url}: the bucket does not exist"
    )


@pytest.mark.parametrize("case", ["unknown-key", "wrong-secret", "read-only"])
def test_s3_rejected_credentials_and_read_only_stores_are_named(
    moto_server: MotoServer, case: str
) -> None:
    bucket = moto_server.make_bucket()
    options = moto_server.options()
    if case == "unknown-key":
        options["key"] = "AKIAUNKNOWNKEY000000"
        expected = "the credentials were rejected (InvalidAccessKeyId: "
    elif case == "wrong-secret":
        options["secret"] = "not-the-secret-6f1d2c"
        expected = "the credentials were rejected (SignatureDoesNotMatch: "
    else:
        assert moto_server.readonly is not None
        options = moto_server.options(moto_server.readonly)
        expected = "is not writable: permission denied"
    store = Store(f"s3://{bucket}/root", options, retry=ONCE)
    with moto_server.authenticating(), pytest.raises(StorageError) as err:
        store.check_writable()
    assert f"store {store.url}" in str(err.value) and expected in str(err.value), err.value
    assert not err.value.transient
    assert options["secret"] not in str(err.value)


def test_s3_unreachable_endpoint_is_named(moto_server: MotoServer) -> None:
    options = {**moto_server.options(), "endpoint_url": f"http://127.0.0.1:{free_port()}"}
    store = Store("s3://bucket/root", options, retry=ONCE)
    started = time.monotonic()
    with pytest.raises(StorageError) as err:
        store.check_writable()
    assert str(err.value).startswith(f"store {store.url}: cannot connect to the endpoint: ")
    assert err.value.transient and time.monotonic() - started < 60


# -- URLs -------------------------------------------------------------------------------------


@pytest.mark.parametrize("url", ["xyz://bucket/x", "nosuchproto::s3://bucket/x"])
def test_unknown_protocol_is_a_usage_error(url: str) -> None:
    with pytest.raises(UsageError, match=r"unknown store protocol '(xyz|nosuchproto)' in URL"):
        Store(url)


@pytest.mark.parametrize("url", ["://x", "", "   ", "s3://"])
def test_malformed_url_is_a_usage_error(url: str) -> None:
    with pytest.raises(UsageError):
        Store(url)


def test_strip_credentials() -> None:
    assert (
        strip_credentials("s3://AKIA:secret@bucket/p?sig=x&region=eu") == "s3://bucket/p?region=eu"
    )
    assert (
        strip_credentials("simplecache::sftp://alice:pw@host/srv") == "simplecache::sftp://host/srv"
    )
    assert strip_credentials("/plain/path") == "/plain/path"
    assert strip_credentials("s3://") == "s3://"


def test_canonical_url_of_local_paths(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    assert canonical_url("rel/store/") == str(tmp_path / "rel/store")
    assert canonical_url(f"file://{tmp_path}/x") == f"{tmp_path}/x"
    assert canonical_url(f"local://{tmp_path}/x/") == f"{tmp_path}/x"
    assert canonical_url("file://rel/x") == str(tmp_path / "rel/x")
    assert canonical_url("s3://k:s@bucket/prefix/") == "s3://bucket/prefix"
    assert canonical_url("memory://") == "memory://"
    assert Store("rel/store").url == str(tmp_path / "rel/store")
    assert isinstance(open_backend(f"file://{tmp_path}/x").url, str)
    assert Store(f"file://{tmp_path}/x/").url == f"{tmp_path}/x"


# -- error translation ------------------------------------------------------------------------


class _FakeClientError(Exception):
    def __init__(self, code: str) -> None:
        super().__init__(f"An error occurred ({code})")
        self.response = {"Error": {"Code": code}}


def test_the_fsspec_boundary_understands_s3_error_codes() -> None:
    lost = OSError(errno.EINVAL, "precondition")
    lost.__cause__ = _FakeClientError("PreconditionFailed")
    taken = classify(lost)
    assert isinstance(taken, AlreadyExists)
    assert isinstance(classify(FileExistsError()), AlreadyExists)
    err = translate(
        taken, op="write", where="manifest", url="s3://b", exists=lambda: CheckpointExists("taken")
    )
    assert isinstance(err, CheckpointExists)
    assert isinstance(classify(_FakeClientError("SlowDown")), Transient)
    assert isinstance(classify(_FakeClientError("ConditionalRequestConflict")), Transient)
    assert not isinstance(classify(_FakeClientError("NoSuchBucket")), Transient)
    assert isinstance(classify(_FakeClientError("AccessDenied")), PermissionDenied)
    denied = translate(classify(_FakeClientError("AccessDenied")), op="read", where="x", url="s3://b")
    assert isinstance(denied, StorageError) and "permission denied" in str(denied)


def test_a_store_that_cannot_be_used_is_named_as_such() -> None:
    from botocore.exceptions import EndpointConnectionError

    def err(exc: Exception) -> StorageError:
        out = translate(classify(exc), op="read", where="manifest of a1/b1", url="s3://b/p")
        assert isinstance(out, StorageError)
        return out

    missing_bucket = FileNotFoundError("The specified bucket does not exist")
    missing_bucket.__cause__ = _FakeClientError("NoSuchBucket")
    gone = translate(
        classify(missing_bucket), op="read", where="manifest of a1/b1", url="s3://b/p",
        not_found=lambda: CheckpointNotFound("no such checkpoint"),
    )  # fmt: skip
    assert isinstance(gone, StorageError)  # not "checkpoint does not exist"
    assert str(gone) == "cannot read manifest of a1/b1 in store s3://b/p: the bucket does not exist"
    for code in ("InvalidAccessKeyId", "SignatureDoesNotMatch", "ExpiredToken"):
        rejected = err(_FakeClientError(code))
        assert f"the credentials were rejected ({code}: " in str(rejected)
        assert not rejected.transient
    down = err(EndpointConnectionError(endpoint_url="http://x"))
    assert "cannot connect to the endpoint: Could not connect" in str(down)
    assert down.transient
    refused = err(ConnectionRefusedError(errno.ECONNREFUSED, "Connection refused"))
    assert "cannot connect to the endpoint" in str(refused) and refused.transient
    assert classify(_FakeClientError("NoSuchKey")).problem is None
    assert classify(PermissionError("Access Denied")).problem is None


# -- sentinel errors: every backend raises them at its boundary --------------------------------


def test_the_local_backend_raises_sentinels(tmp_path: Path) -> None:
    backend = LocalBackend(str(tmp_path / "s"))
    with pytest.raises(NotFound) as missing:
        backend.get(k("blobs/ab/none"))
    assert isinstance(missing.value.__cause__, FileNotFoundError)
    backend.create(k("cryostash-store.json"), b"{}")
    with pytest.raises(AlreadyExists):
        backend.create(k("cryostash-store.json"), b"{}")
    (tmp_path / "elsewhere").mkdir()
    os.symlink(tmp_path / "elsewhere", tmp_path / "s" / "checkpoints")
    with pytest.raises(Permanent, match="is a symbolic link") as linked:
        backend.put(k("checkpoints/c1/cp1/log"), [b"x"])
    assert isinstance(linked.value.__cause__, OSError) and not isinstance(linked.value, Transient)


def test_the_memory_backend_raises_sentinels(tmp_path: Path) -> None:
    plan = FaultPlan()
    url = f"memory://cryostash-sentinels-{os.getpid()}-{time.monotonic_ns()}/root"
    backend = open_backend(f"faulty::{url}", {"plan": plan})
    try:
        with pytest.raises(NotFound):
            backend.get(k("blobs/ab/none"))
        backend.create(k("keys/a.json"), b"{}")
        with pytest.raises(AlreadyExists):
            backend.create(k("keys/a.json"), b"{}")
        plan.add(fail("cat_file", times=1))
        with pytest.raises(Transient, match="injected reset"):
            backend.get(k("keys/a.json"))
        plan.add(fail("cat_file", transient=False, times=1))
        with pytest.raises(PermissionDenied, match="injected permanent failure"):
            backend.get(k("keys/a.json"))
        assert backend.get(k("keys/a.json")) == b"{}"
    finally:
        backend.delete_prefix("keys")


def test_the_s3_backend_raises_sentinels(moto_server: MotoServer) -> None:
    bucket = moto_server.make_bucket()
    backend = open_backend(f"s3://{bucket}/root", moto_server.options())
    with pytest.raises(NotFound):
        backend.get(k("blobs/ab/none"))
    backend.create(k("keys/a.json"), b"{}")
    with pytest.raises(AlreadyExists):  # the server's 412
        backend.create(k("keys/a.json"), b"{}")
    gone = open_backend("s3://no-such-bucket-for-cryostash/root", moto_server.options())
    with pytest.raises(NotFound) as no_bucket:
        gone.get(k("keys/a.json"))
    assert no_bucket.value.problem == "the bucket does not exist"
    assert moto_server.readonly is not None
    readonly = open_backend(f"s3://{bucket}/root", moto_server.options(moto_server.readonly))
    with moto_server.authenticating(), pytest.raises(PermissionDenied):
        readonly.put(k("keys/b.json"), [b"{}"])
    options = {**moto_server.options(), "endpoint_url": f"http://127.0.0.1:{free_port()}",
               "config_kwargs": {"retries": {"total_max_attempts": 1}}}
    down = open_backend(f"s3://{bucket}/root", options)
    with pytest.raises(Transient) as unreachable:
        down.get(k("keys/a.json"))
    assert (unreachable.value.problem or "").startswith("cannot connect to the endpoint")
