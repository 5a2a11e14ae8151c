"""transfer: scan, upload, download — round trips, deduplication, corruption, retries."""

from __future__ import annotations

import os
import random
import tempfile
from collections.abc import Iterator
from pathlib import Path

import blake3
import pytest
from fsspec.callbacks import Callback
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from cryostash import transfer
from cryostash.errors import IntegrityError, StorageError, UsageError
from cryostash.storage import BlobUpload, Store
from cryostash.types import FileEntry
from tests.support.stores import Backend, make_backend

BLOCK = transfer.BLOCK


def make_tree(root: Path) -> dict[str, tuple[bytes, int]]:
    """A small image directory: nested folders, empty files, a duplicate, odd modes."""
    files = {
        "inventory.img": (b"inventory", 0o644),
        "core-1.img": (os.urandom(5000), 0o600),
        "pages-1.img": (os.urandom(BLOCK + 17), 0o600),
        "empty.img": (b"", 0o600),
        "sub/dir/deep.img": (b"deep", 0o755),
        "sub/empty-too.img": (b"", 0o640),
        "sub/copy-of-inventory.img": (b"inventory", 0o444),
    }
    for rel, (data, mode) in files.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
        os.chmod(path, mode)
    return files


def read_tree(root: Path) -> dict[str, tuple[bytes, int]]:
    out = {}
    for dirpath, _, names in os.walk(root):
        for name in names:
            path = Path(dirpath, name)
            out[path.relative_to(root).as_posix()] = (
                path.read_bytes(),
                path.stat().st_mode & 0o7777,
            )
    return out


def test_scan_tree_records_every_file_sorted(tmp_path: Path) -> None:
    files = make_tree(tmp_path)
    entries = transfer.scan_tree(tmp_path, jobs=3)
    assert [e.path for e in entries] == sorted(files)
    for entry in entries:
        data, mode = files[entry.path]
        assert entry.size == len(data) and entry.mode == mode
        assert entry.digest == blake3.blake3(data).hexdigest()
        assert entry.blobs == ((entry.digest,) if data else ())


def test_scan_tree_rejects_symlinks_and_special_files(tmp_path: Path) -> None:
    (tmp_path / "a").write_bytes(b"x")
    (tmp_path / "link").symlink_to(tmp_path / "a")
    with pytest.raises(UsageError, match="link is a symbolic link"):
        transfer.scan_tree(tmp_path)
    (tmp_path / "link").unlink()
    os.mkfifo(tmp_path / "fifo")
    with pytest.raises(UsageError, match="fifo is not a regular file"):
        transfer.scan_tree(tmp_path)


def test_round_trip_preserves_bytes_modes_and_folders(backend: Backend, tmp_path: Path) -> None:
    store = backend.store()
    src, dest = tmp_path / "src", tmp_path / "dest"
    files = make_tree(src)
    entries = transfer.scan_tree(src)
    up = transfer.upload(store, src, entries, jobs=3)
    distinct = {e.digest for e in entries if e.blobs}
    assert up.files == len(files) and up.blobs == len(distinct) == 4
    assert up.blobs_uploaded == 4 and up.blobs_skipped == 0
    assert up.bytes_uploaded == sum(e.size for e in entries if e.blobs) - len(b"inventory")
    assert set(store.list_blobs()) == distinct
    down = transfer.download(store, entries, dest, jobs=3)
    assert read_tree(dest) == files
    assert down.files == len(files) and down.bytes_downloaded == sum(e.size for e in entries)


def test_second_upload_skips_everything(backend: Backend, tmp_path: Path) -> None:
    store = backend.store()
    make_tree(tmp_path)
    entries = transfer.scan_tree(tmp_path)
    transfer.upload(store, tmp_path, entries)
    again = transfer.upload(store, tmp_path, entries)
    assert again.blobs_uploaded == 0 and again.bytes_uploaded == 0
    assert again.blobs_skipped == again.blobs == 4


def test_skip_set_and_predicate_avoid_asking_the_store(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = Store(str(tmp_path / "store"))
    src = tmp_path / "src"
    make_tree(src)
    entries = transfer.scan_tree(src)
    known = {e.digest for e in entries if e.blobs}
    asked: list[str] = []
    real_has = store.has_blob

    def has_blob(digest: str) -> bool:
        asked.append(digest)
        return real_has(digest)

    monkeypatch.setattr(store, "has_blob", has_blob)
    stats = transfer.upload(store, src, entries, skip=known)
    assert stats.blobs_skipped == 4 and asked == [] and list(store.list_blobs()) == []
    stats = transfer.upload(store, src, entries, skip=lambda d: d != min(known))
    assert stats.blobs_uploaded == 1 and asked == [min(known)]


def _upload_tree(store: Store, root: Path) -> list[FileEntry]:
    make_tree(root)
    entries = transfer.scan_tree(root)
    transfer.upload(store, root, entries)
    return entries


def test_flipped_byte_is_an_integrity_error_naming_file_and_blob(
    backend: Backend, tmp_path: Path
) -> None:
    store = backend.store()
    entries = _upload_tree(store, tmp_path / "src")
    victim = next(e for e in entries if e.path == "pages-1.img")
    backend.raw.flip_byte(backend.raw.blob(victim.digest), offset=BLOCK + 3)
    dest = tmp_path / "dest"
    with pytest.raises(IntegrityError) as err:
        transfer.download(store, entries, dest, jobs=1)
    message = str(err.value)
    assert message.startswith(f"blob {victim.digest} of file pages-1.img is corrupt: expected ")
    assert not (dest / "pages-1.img").exists()
    assert not [p for p in dest.rglob("*") if p.name.endswith(".part")]


def test_deleted_blob_is_an_error_naming_file_and_blob(backend: Backend, tmp_path: Path) -> None:
    store = backend.store()
    entries = _upload_tree(store, tmp_path / "src")
    victim = next(e for e in entries if e.path == "sub/dir/deep.img")
    backend.raw.remove(backend.raw.blob(victim.digest))
    with pytest.raises(IntegrityError) as err:
        transfer.download(store, entries, tmp_path / "dest")
    assert str(err.value) == (
        f"blob {victim.digest} of file sub/dir/deep.img is missing from store {store.url}"
    )


@pytest.mark.parametrize("change", [b"", b"extra"])
def test_blob_of_wrong_length_is_an_integrity_error(tmp_path: Path, change: bytes) -> None:
    store = Store(str(tmp_path / "store"))
    entries = _upload_tree(store, tmp_path / "src")
    victim = next(e for e in entries if e.path == "inventory.img")
    blob = tmp_path / "store" / "blobs" / victim.digest[:2] / victim.digest
    blob.write_bytes(blob.read_bytes()[:-1] if not change else blob.read_bytes() + change)
    with pytest.raises(IntegrityError, match=f"blob {victim.digest} of file "):
        transfer.download(store, entries, tmp_path / "dest", jobs=1)


def test_hostile_entry_path_never_writes_outside_dest(tmp_path: Path) -> None:
    store = Store(str(tmp_path / "store"))
    digest = blake3.blake3(b"").hexdigest()
    for bad in ("../escape.img", "/tmp/abs.img"):
        with pytest.raises(IntegrityError, match="unsafe file path"):
            transfer.download(store, [FileEntry(bad, 0o600, 0, (), digest)], tmp_path / "dest")
    assert not (tmp_path / "escape.img").exists()


def test_transient_failures_are_retried(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    store = Store(str(tmp_path / "store"))
    src = tmp_path / "src"
    make_tree(src)
    entries = transfer.scan_tree(src)
    failures = {"left": 2}
    real_put = store.put_blob

    def flaky_put(digest: str, path: Path, callback: object = None) -> None:
        if failures["left"]:
            failures["left"] -= 1
            raise StorageError("connection reset", transient=True)
        real_put(digest, path)

    monkeypatch.setattr(store, "put_blob", flaky_put)
    stats = transfer.upload(store, src, entries, jobs=1, backoff=0)
    assert stats.retries == 2 and stats.blobs_uploaded == 4


def test_permanent_failure_is_not_retried(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    store = Store(str(tmp_path / "store"))
    src = tmp_path / "src"
    make_tree(src)
    entries = transfer.scan_tree(src)
    calls: list[str] = []

    def broken_put(digest: str, path: Path, callback: object = None) -> None:
        calls.append(digest)
        raise StorageError("permission denied: nope")

    monkeypatch.setattr(store, "put_blob", broken_put)
    with pytest.raises(StorageError, match="permission denied"):
        transfer.upload(store, src, entries, jobs=1, backoff=0)
    assert len(calls) == 1  # first failure stops the batch; nothing retried


def test_progress_callback_sees_every_byte(tmp_path: Path) -> None:
    store = Store(str(tmp_path / "store"))
    src = tmp_path / "src"
    make_tree(src)
    entries = transfer.scan_tree(src)
    up = Callback()
    transfer.upload(store, src, entries, callback=up)
    assert up.size == up.value == sum({e.digest: e.size for e in entries}.values())
    down = Callback()
    transfer.download(store, entries, tmp_path / "dest", callback=down)
    assert down.size == down.value == sum(e.size for e in entries)


SIZES = st.one_of(
    st.sampled_from([0, 1, 2, BLOCK - 1, BLOCK, BLOCK + 1, 2 * BLOCK + 1]),
    st.integers(min_value=0, max_value=70_000),
)


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    files=st.lists(st.tuples(SIZES, st.integers(0, 2**32), st.booleans()), min_size=1, max_size=5),
    small=st.binary(max_size=300),
)
def test_arbitrary_contents_round_trip(files: list[tuple[int, int, bool]], small: bytes) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        src, dest = root / "src", root / "dest"
        expected = {"small.bin": small}
        for i, (size, seed, zeros) in enumerate(files):
            data = bytes(size) if zeros else random.Random(seed).randbytes(size)
            expected[f"d{i % 2}/f{i}.img"] = data
        for rel, data in expected.items():
            (src / rel).parent.mkdir(parents=True, exist_ok=True)
            (src / rel).write_bytes(data)
        store = Store(str(root / "store"))
        entries = transfer.scan_tree(src)
        transfer.upload(store, src, entries)
        transfer.download(store, entries, dest)
        assert {k: v[0] for k, v in read_tree(dest).items()} == expected


# -- multipart (S3) and bounded memory --------------------------------------------------

PART = transfer.MIN_PART_SIZE


def _big_tree(root: Path) -> dict[str, bytes]:
    """One file of 2.5 parts (half random, half zeros, like CRIU's pages) and small ones."""
    half = (5 * PART // 2 + 7) // 2
    files = {
        "pages-1.img": os.urandom(half) + bytes(5 * PART // 2 + 7 - half),
        "core-1.img": os.urandom(4000),
        "mm-1.img": os.urandom(PART - 1),
    }
    for rel, data in files.items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_bytes(data)
    return files


class _PartSpy:
    """Records the size of every part sent (wraps ``BlobUpload.put_part``)."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch, fail: dict[int, StorageError]) -> None:
        self.sizes: list[int] = []
        self.fail = fail
        real = BlobUpload.put_part
        spy = self

        def put_part(upload: BlobUpload, number: int, data: bytes) -> None:
            if number in spy.fail:
                raise spy.fail.pop(number)
            spy.sizes.append(len(data))
            real(upload, number, data)

        monkeypatch.setattr(BlobUpload, "put_part", put_part)


@pytest.fixture
def s3_backend(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Backend]:
    """A fresh bucket on the session's S3 endpoint (the one backend with multipart)."""
    made = make_backend("s3", request, tmp_path)
    try:
        yield made
    finally:
        made.cleanup()


def _incomplete_uploads(backend: Backend) -> list[object]:
    fs = backend.raw.fs
    bucket = backend.raw.root.split("/")[0]
    return list(fs.call_s3("list_multipart_uploads", Bucket=bucket).get("Uploads", []))


def test_large_blob_goes_up_in_parts_of_bounded_size(
    backend: Backend, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = backend.store()
    src, dest = tmp_path / "src", tmp_path / "dest"
    files = _big_tree(src)
    entries = transfer.scan_tree(src)
    spy = _PartSpy(monkeypatch, {})
    progress = Callback()
    up = transfer.upload(store, src, entries, jobs=3, part_size=PART, callback=progress)
    assert up.blobs_uploaded == 3 and up.bytes_uploaded == sum(map(len, files.values()))
    assert progress.size == progress.value == up.bytes_uploaded
    if store.supports_multipart:
        big = len(files["pages-1.img"])
        assert sorted(spy.sizes) == sorted([PART, PART, big - 2 * PART])
        assert _incomplete_uploads(backend) == []
    else:
        assert spy.sizes == []
    down = transfer.download(store, entries, dest, jobs=2)
    assert {k: v[0] for k, v in read_tree(dest).items()} == files
    assert down.bytes_downloaded == up.bytes_uploaded
    again = transfer.upload(store, src, entries, jobs=3, part_size=PART)
    assert again.blobs_uploaded == 0 and again.blobs_skipped == 3


def test_failed_part_aborts_the_upload_and_leaves_nothing(
    s3_backend: Backend, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = s3_backend.store()
    assert store.supports_multipart
    src = tmp_path / "src"
    files = _big_tree(src)
    entries = transfer.scan_tree(src)
    _PartSpy(monkeypatch, {2: StorageError("permission denied: part 2")})
    with pytest.raises(StorageError, match="part 2"):
        transfer.upload(store, src, entries, jobs=2, part_size=PART, backoff=0)
    big = blake3.blake3(files["pages-1.img"]).hexdigest()
    assert not store.has_blob(big)
    assert _incomplete_uploads(s3_backend) == []


def test_transient_part_failure_is_retried(
    s3_backend: Backend, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = s3_backend.store()
    assert store.supports_multipart
    src, dest = tmp_path / "src", tmp_path / "dest"
    files = _big_tree(src)
    entries = transfer.scan_tree(src)
    _PartSpy(monkeypatch, {3: StorageError("connection reset", transient=True)})
    progress = Callback()
    up = transfer.upload(store, src, entries, jobs=2, part_size=PART, backoff=0,
                         callback=progress)  # fmt: skip
    assert up.retries == 1 and up.blobs_uploaded == 3
    assert progress.value == progress.size
    transfer.download(store, entries, dest)
    assert {k: v[0] for k, v in read_tree(dest).items()} == files


def test_part_size_below_the_s3_minimum_is_refused(tmp_path: Path) -> None:
    with pytest.raises(UsageError, match="part size must be at least"):
        transfer.upload(Store(str(tmp_path / "s")), tmp_path, [], part_size=PART - 1)
