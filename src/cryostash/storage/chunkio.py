"""Chunk objects in a store: write an encoded object, read one back, decode and verify.

A chunk is a blob (``blobs/<h[0:2]>/<h>``, see :mod:`cryostash.storage.layout`) whose
bytes are an encoded object (:mod:`cryostash.storage.codec`) and whose name ``h`` is the
BLAKE3 of the *plain* bytes. So ``Store.has_blob``, ``list_blobs``, ``delete_blob`` and
``blob_size`` (the stored, encoded size) apply to chunks unchanged.

- :func:`put_object` stores an encoded object atomically and idempotently. On local disk
  it is one temporary sibling written with ``writev``, ``fdatasync``-ed when ``durable``,
  and renamed into place (the folders it wrote into are fsynced by :func:`sync_dirs`);
  with a :class:`DurableBatch` the ``fdatasync`` and the rename wait for the batch's one
  barrier (:meth:`DurableBatch.commit`). Elsewhere it is one PUT of the whole object (a
  chunk is at most 16 MiB).
- :func:`get_object` reads a whole stored object (one GET).
- :func:`read_chunk` returns a chunk's plain bytes, decoded and verified (BLAKE3 and,
  when given, the plain size): what restore and ``verify --read-data`` need.

Errors are translated like every Store operation: a missing object is CheckpointNotFound
(``blob DIGEST does not exist in store URL``), a failing backend StorageError (transient
when a retry may succeed), wrong bytes IntegrityError.
"""

from __future__ import annotations

import contextlib
import functools
import os
import secrets
import threading
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING

from cryostash.errors import CheckpointNotFound, IntegrityError
from cryostash.hooks import crash_point
from cryostash.storage import codec, layout, localfs
from cryostash.storage.translate import translating

if TYPE_CHECKING:
    from cryostash.storage.store import Store

#: Largest plain chunk accepted when decoding (pyfastcdc's largest maximum).
MAX_PLAIN = 16 << 20


def _missing(store: Store, digest: str) -> CheckpointNotFound:
    return CheckpointNotFound(f"blob {digest} does not exist in store {store.url}")


def _write_all(fd: int, parts: Sequence[codec.Buffer]) -> None:
    views = [memoryview(p).cast("B") for p in parts if len(p)]
    while views:
        done = os.writev(fd, views)
        while views and done >= len(views[0]):
            done -= len(views[0])
            views.pop(0)
        if views and done:
            views[0] = views[0][done:]


@functools.cache
def _start_writeback() -> Callable[[int], None]:
    """``fd -> None`` asking the kernel to start writing a file's dirty pages out now,
    without waiting (``sync_file_range(SYNC_FILE_RANGE_WRITE)``); a no-op where that
    call is missing. A hint only: durability still comes from ``fdatasync``."""
    try:
        import ctypes

        call = ctypes.CDLL(None, use_errno=True).sync_file_range
    except (OSError, AttributeError):
        return lambda fd: None
    call.argtypes = (ctypes.c_int, ctypes.c_int64, ctypes.c_int64, ctypes.c_uint)

    def start(fd: int) -> None:
        call(fd, 0, 0, 2)  # SYNC_FILE_RANGE_WRITE; a failure only means no head start

    return start


class DurableBatch:
    """Local blobs written now and made durable, then visible, together by :meth:`commit`.

    :func:`put_object` given a batch writes each object to a temporary sibling and only
    starts its write-out (asynchronous: the disk works while the caller hashes and
    compresses the next chunks). :meth:`commit` is the one durability barrier: it
    ``fdatasync``-s every temporary file (``jobs`` at a time), renames each into place
    and fsyncs the folders. The guarantee is the one of a durable :func:`put_object`: a
    blob's name appears only once its bytes are on disk, and a caller that writes a
    manifest after :meth:`commit` returned never names a blob a crash could lose. Until
    then the objects are invisible (``.<digest>.<random>.tmp``: a crash leaves strays
    that ``gc`` removes). :meth:`discard` removes them (a failed create). Thread-safe.
    """

    def __init__(self, store: Store, jobs: int = 4) -> None:
        self._store = store
        self._jobs = max(1, jobs)
        self._lock = threading.Lock()
        self._temps: list[tuple[str, str]] = []  # (temporary, final) paths

    def add(self, tmp: str, final: str) -> None:
        """Record a written temporary file to be made durable and renamed to ``final``."""
        with self._lock:
            self._temps.append((tmp, final))

    def commit(self) -> list[str]:
        """Make every object durable, then visible; returns the final paths renamed.

        Raises:
            StorageError: a sync or rename failed (the remaining temporary files are
                removed; blobs already renamed stay: they are whole).
        """
        with self._lock:
            temps, self._temps = self._temps, []
        try:
            with translating("write", f"{len(temps)} new blobs", url=self._store.url):
                if len(temps) > 1 and self._jobs > 1:
                    with ThreadPoolExecutor(max_workers=self._jobs) as pool:
                        list(pool.map(_sync_file, (tmp for tmp, _ in temps)))
                else:
                    for tmp, _ in temps:
                        _sync_file(tmp)
                for done, (tmp, final) in enumerate(temps):
                    os.rename(tmp, final)
                    if not done:
                        crash_point("mid-upload")  # test-only (CRYOSTASH_TEST_CRASH_AT)
                for folder in sorted({os.path.dirname(final) for _, final in temps}):
                    localfs.fsync_dir(folder)
        except BaseException:
            _unlink_all(tmp for tmp, _ in temps)
            raise
        return [final for _, final in temps]

    def discard(self) -> None:
        """Remove every temporary file not committed yet (best effort)."""
        with self._lock:
            temps, self._temps = self._temps, []
        _unlink_all(tmp for tmp, _ in temps)


def _sync_file(path: str) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    try:
        os.fdatasync(fd)
    finally:
        os.close(fd)


def _unlink_all(paths: Iterable[str]) -> None:
    for path in paths:
        with contextlib.suppress(OSError):
            os.unlink(path)


def put_object(
    store: Store,
    digest: str,
    parts: Sequence[codec.Buffer],
    *,
    durable: bool = True,
    batch: DurableBatch | None = None,
) -> bool:
    """Store the encoded object ``parts`` (concatenated) as blob ``digest``.

    The caller vouches that the parts encode content whose BLAKE3 is ``digest``.
    Returns False when a local blob already existed (nothing written), else True.
    Atomic: the object appears whole or not at all. On local disk with ``batch``, it
    appears (durably) when the batch is committed; other stores ignore ``batch``.

    Raises:
        StorageError: the write failed (nothing is left under the final name).
    """
    path = layout.blob_path(store.root, digest)
    with translating("upload", f"blob {digest}", url=store.url):
        if store.is_local:
            if os.path.exists(path):
                return False
            folder = os.path.dirname(path)
            if not os.path.isdir(folder):
                localfs.makedirs(folder)
            tmp = os.path.join(folder, f".{digest}.{secrets.token_hex(6)}.tmp")
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o644)
            try:
                try:
                    _write_all(fd, parts)
                    if batch is not None:
                        _start_writeback()(fd)
                    elif durable:
                        os.fdatasync(fd)
                finally:
                    os.close(fd)
                if batch is not None:
                    batch.add(tmp, path)
                    return True
                os.rename(tmp, path)
            except BaseException:
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(tmp)
                raise
            crash_point("mid-upload")  # test-only (CRYOSTASH_TEST_CRASH_AT)
            return True
        store._makedirs(path.rpartition("/")[0])  # no-op on object stores
        store.fs.pipe_file(path, b"".join(parts))
        crash_point("mid-upload")
        return True


def sync_dirs(store: Store, digests: Iterable[str]) -> None:
    """fsync the local folders that hold ``digests`` (after :func:`put_object` with
    ``durable`` and no batch), so that the new names survive a crash. No-op on other
    stores."""
    if not store.is_local:
        return
    for prefix in sorted({d[:2] for d in digests}):
        localfs.fsync_dir(layout.join(layout.blobs_dir(store.root), prefix))


def get_object(store: Store, digest: str) -> bytes:
    """The stored (encoded) bytes of blob ``digest``.

    Raises:
        CheckpointNotFound: ``blob DIGEST does not exist in store URL``.
        StorageError: the read failed.
    """
    path = layout.blob_path(store.root, digest)
    with translating(
        "read", f"blob {digest}", url=store.url, not_found=lambda: _missing(store, digest)
    ):
        if store.is_local:
            with open(path, "rb", buffering=0) as fh:
                return fh.read()
        # s3fs may stat the object first, from a folder listing cached by an earlier
        # ``find`` of this process that predates the object: drop it (another host wrote).
        with contextlib.suppress(Exception):
            store.fs.invalidate_cache(path)
        return bytes(store.fs.cat_file(path))


def verified(
    data: codec.Buffer, digest: str, size: int | None = None, *, what: str | None = None
) -> bytes | memoryview:
    """Decode the stored object ``data`` of chunk ``digest`` and check it.

    Raises:
        IntegrityError: ``blob DIGEST[ of file F] is corrupt: ...`` (bad encoding, wrong
            size, wrong BLAKE3).
    """
    import blake3

    label = what or f"blob {digest}"
    limit = MAX_PLAIN if size is None else size
    plain = codec.decode(data, max_size=limit, what=label)
    if size is not None and len(plain) != size:
        raise IntegrityError(f"{label} is corrupt: {len(plain)} bytes, expected {size}")
    got = blake3.blake3(plain).hexdigest()
    if got != digest:
        raise IntegrityError(f"{label} is corrupt: expected BLAKE3 {digest}, got {got}")
    return plain


def read_chunk(store: Store, digest: str, size: int | None = None) -> bytes:
    """The plain bytes of chunk ``digest``, decoded and verified.

    Args:
        size: the plain size the manifest records, checked when given.

    Raises:
        CheckpointNotFound: the object is missing.
        IntegrityError: its bytes do not decode to content hashing to ``digest``.
        StorageError: the read failed.
    """
    return bytes(verified(get_object(store, digest), digest, size))
