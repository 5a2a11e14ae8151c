"""Chunk objects in a store: write an encoded object, read one back, decode and verify.

A chunk is a blob (``blobs/<h[0:2]>/<h>``, see :mod:`cryostash.storage.layout`) whose
bytes are an encoded object (:mod:`cryostash.storage.codec`) and whose name ``h`` is the
BLAKE3 of the *plain* bytes. So ``Store.has_blob``, ``list_blobs``, ``delete_blob`` and
``blob_size`` (the stored, encoded size) apply to chunks unchanged.

- :func:`put_object` stores an encoded object atomically and idempotently. On local disk
  it is one temporary sibling written with ``writev``, ``fdatasync``-ed when ``durable``,
  and renamed into place (the folders it wrote into are fsynced by :func:`sync_dirs`).
  Elsewhere it is one PUT of the whole object (a chunk is at most 16 MiB).
- :func:`get_object` reads a whole stored object (one GET).
- :func:`read_chunk` returns a chunk's plain bytes, decoded and verified (BLAKE3 and,
  when given, the plain size): what restore and ``verify --read-data`` need.

Errors are translated like every Store operation: a missing object is CheckpointNotFound
(``blob DIGEST does not exist in store URL``), a failing backend StorageError (transient
when a retry may succeed), wrong bytes IntegrityError.
"""

from __future__ import annotations

import contextlib
import os
import secrets
from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING

from cryostash.crashpoints import crash_point
from cryostash.errors import CheckpointNotFound, IntegrityError
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


def put_object(
    store: Store, digest: str, parts: Sequence[codec.Buffer], *, durable: bool = True
) -> bool:
    """Store the encoded object ``parts`` (concatenated) as blob ``digest``.

    The caller vouches that the parts encode content whose BLAKE3 is ``digest``.
    Returns False when a local blob already existed (nothing written), else True.
    Atomic: the object appears whole or not at all.

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
                    if durable:
                        os.fdatasync(fd)
                finally:
                    os.close(fd)
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
    ``durable``), so that the new names survive a crash. No-op on other stores."""
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
