"""``Store``: the checkpoint folder contract and a content-addressed blob area,
over any fsspec filesystem.

Layout under the root (see :mod:`cryostash.storage.layout`)::

    checkpoints/<target>/<name>/manifest.json   written last, create-only: the commit marker
    blobs/<h[0:2]>/<h>                          content-addressed bytes (BLAKE3 hex)

The store knows nothing of SQL or CRIU. Ordering is the caller's job: write every
blob a manifest names *before* the manifest; a listing shows a checkpoint only once
its manifest exists, so a crash before that leaves nothing visible (only blobs, which
gc removes after its grace period).

Thread safety: a ``Store`` holds no mutable state of its own; every method may be
called from several threads at once (fsspec's local, memory and s3 filesystems are
thread-safe). Errors: every backend exception is translated in one place
(:mod:`cryostash.storage.translate`); callers only see cryostash errors.
"""

from __future__ import annotations

import os
import secrets
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import AbstractContextManager, suppress
from pathlib import Path
from typing import Any, BinaryIO, cast

from cryostash.errors import (
    CheckpointExists,
    CheckpointNotFound,
    CryostashError,
    StorageError,
)
from cryostash.storage import layout, localfs
from cryostash.storage.localfs import Progress
from cryostash.storage.manifest import StoredManifest, load_manifest
from cryostash.storage.translate import is_transient, store_problem, translating

#: Backends whose ``pipe_file(mode="create")`` is a server-side conditional write.
_NATIVE_CREATE = frozenset({"s3", "s3a"})
#: Object stores: no folders to make (``makedirs`` may even create buckets there).
_OBJECT_STORES = frozenset({"s3", "s3a", "gs", "gcs", "az", "abfs", "abfss", "adl", "oss"})
#: Serialises exists-then-write on backends without a native create-only write. For
#: ``memory://`` (process-local) this makes it atomic; elsewhere it only protects
#: against other threads of this process (``supports_atomic_create`` is then False).
_CREATE_LOCK = threading.Lock()


def _protocol(fs: Any) -> str:
    proto = fs.protocol
    return str(proto[0] if isinstance(proto, tuple | list) else proto)


class Store:
    """A checkpoint store rooted at ``url`` (a local path or any fsspec URL).

    Args:
        url: root of the store: ``/srv/store``, ``file:///srv/store``,
            ``s3://bucket/prefix``, ``memory://name``... A local root that does not
            exist is created on first write.
        storage_options: passed to fsspec (``key``, ``secret``, ``endpoint_url``...);
            never shown, never persisted.

    Attributes:
        url: canonical root URL without credentials (a local root is an absolute
            path): safe to show and to use as the catalog's store key.
        is_local: the root is on the local file system.
        supports_atomic_create: :meth:`write_manifest` is create-only even against
            writers on other hosts (local disk: ``link``; S3: ``If-None-Match: *``;
            memory: process-wide lock). False means exists-then-write.

    Raises:
        UsageError: unknown protocol (``unknown store protocol 'xyz' in URL ...``),
            malformed URL, missing backend package, or a local root that is a file
            (``PATH exists and is not a directory``).
    """

    def __init__(self, url: str, storage_options: Mapping[str, Any] | None = None) -> None:
        from cryostash.storage.location import open_root

        opened = open_root(url, storage_options)
        self._opened_fs: Any = opened.fs  # None on the local disk until fsspec is needed
        self._root: str = opened.root
        self._local: str | None = opened.local_root
        self.url: str = opened.url
        self.is_local: bool = self._local is not None
        self._protocol = "file" if self.is_local else _protocol(self._fs)
        chained = "::" in url
        self.supports_atomic_create: bool = self.is_local or (
            not chained and self._protocol in _NATIVE_CREATE | {"memory"}
        )
        self._native_create = self.is_local or (not chained and self._protocol in _NATIVE_CREATE)

    def __repr__(self) -> str:
        return f"Store({self.url!r})"

    @property
    def fs(self) -> Any:
        """The underlying fsspec filesystem (for tests and tools; bypasses every check)."""
        return self._fs

    @property
    def _fs(self) -> Any:
        """The fsspec filesystem; for a local root made on first use, so that the verbs
        that need none of it (create, restore, ls on local disk) never import fsspec."""
        if self._opened_fs is None:
            from fsspec.implementations.local import LocalFileSystem

            self._opened_fs = LocalFileSystem()
        return self._opened_fs

    @property
    def root(self) -> str:
        """The root path in the filesystem's own terms (no protocol)."""
        return self._root

    # -- helpers ------------------------------------------------------------------

    def _guard(
        self,
        op: str,
        where: str,
        *,
        not_found: Callable[[], CryostashError] | None = None,
        exists: Callable[[], CryostashError] | None = None,
    ) -> AbstractContextManager[None]:
        return translating(op, where, url=self.url, not_found=not_found, exists=exists)

    def _makedirs(self, path: str) -> None:
        if self._local is not None:
            localfs.makedirs(path)
        elif self._protocol not in _OBJECT_STORES:
            self._fs.makedirs(path, exist_ok=True)

    def _fresh(self, path: str) -> None:
        """Drop cached listings of ``path``: other hosts write to the same store. The
        local file system caches none."""
        if self._local is not None:
            return
        with suppress(Exception):
            self._fs.invalidate_cache(path)

    def _find(self, prefix: str) -> list[str]:
        self._fresh(prefix)
        try:
            return [str(p) for p in self._fs.find(prefix)]
        except FileNotFoundError:
            return []

    @staticmethod
    def _exists_error(target: str, name: str) -> Callable[[], CryostashError]:
        return lambda: CheckpointExists(
            f"checkpoint with name {name} already exists for container {target}"
        )

    @staticmethod
    def _missing_error(target: str, name: str) -> Callable[[], CryostashError]:
        return lambda: CheckpointNotFound(
            f"checkpoint {name} does not exist for container {target}"
        )

    def _missing_blob(self, digest: str) -> Callable[[], CryostashError]:
        return lambda: CheckpointNotFound(f"blob {digest} does not exist in store {self.url}")

    # -- checkpoints ------------------------------------------------------------------

    def manifest_exists(self, target: str, name: str) -> bool:
        """True if ``target``/``name`` has a manifest (is committed in the store)."""
        path = layout.manifest_path(self._root, target, name)
        with self._guard("check", f"manifest of {target}/{name}"):
            if self._local is not None:
                return os.path.isfile(path)
            self._fresh(path)
            try:  # not ``isfile``: it answers False for any error (no bucket, no network...)
                return bool(self._fs.info(path)["type"] == "file")
            except FileNotFoundError:
                return False

    def write_manifest(self, target: str, name: str, data: bytes) -> None:
        """Write the manifest of ``target``/``name``: create-only and atomic.

        This is the commit marker: call it after every blob the manifest names is
        stored. Atomic: readers see no manifest or all of ``data``. Create-only: if a
        manifest exists (whoever wrote it), it is left intact and CheckpointExists is
        raised; with ``supports_atomic_create`` this holds against concurrent writers
        on other hosts too. Local disk: temp sibling + fsync + ``link`` + folder fsync.
        S3: one PUT with ``If-None-Match: *``.

        Raises:
            CheckpointExists: ``checkpoint with name NAME already exists for container TARGET``.
            StorageError: the write failed; no manifest was written.
        """
        path = layout.manifest_path(self._root, target, name)
        folder = layout.checkpoint_dir(self._root, target, name)
        where = f"manifest of {target}/{name}"
        with self._guard("create folder for", where):
            self._makedirs(folder)
        with self._guard("write", where, exists=self._exists_error(target, name)):
            if self._local is not None:
                localfs.write_create_only(path, bytes(data))
            elif self._native_create:
                self._fs.pipe_file(path, bytes(data), mode="create")
            else:
                with _CREATE_LOCK:
                    self._fresh(path)
                    if self._fs.exists(path):
                        raise FileExistsError(path)
                    self._fs.pipe_file(path, bytes(data))
            self._fresh(path)

    def read_manifest(self, target: str, name: str) -> bytes:
        """The bytes of the manifest of ``target``/``name``.

        Raises:
            CheckpointNotFound: ``checkpoint NAME does not exist for container TARGET``.
            StorageError: the read failed.
        """
        path = layout.manifest_path(self._root, target, name)
        with self._guard(
            "read", f"manifest of {target}/{name}", not_found=self._missing_error(target, name)
        ):
            if self._local is not None:
                return localfs.read_file(path)
            return bytes(self._fs.cat_file(path))

    def load_manifest(
        self, target: str, name: str, expected: str | None = None
    ) -> StoredManifest:
        """The manifest of ``target``/``name``, parsed and checked against the digest the
        catalog recorded (``expected``; None: not checked). The one manifest loader.

        Raises:
            CheckpointNotFound: no manifest. StorageError: the read failed.
            IntegrityError: not a valid manifest of this checkpoint.
            ManifestMismatch: valid but not the one the catalog recorded.
        """
        data = self.read_manifest(target, name)
        return load_manifest(data, target=target, name=name, expected=expected)

    def delete_manifest(self, target: str, name: str) -> None:
        """Remove the folder of ``target``/``name`` (manifest first, so a crash midway
        leaves it uncommitted). Idempotent: a missing checkpoint is not an error.
        Blobs are not touched (gc or the manager decides which to delete)."""
        path = layout.manifest_path(self._root, target, name)
        folder = layout.checkpoint_dir(self._root, target, name)
        with self._guard("delete", f"checkpoint {target}/{name}"):
            with suppress(FileNotFoundError):
                self._fs.rm_file(path)
            with suppress(FileNotFoundError):
                if self._local is None or os.path.isdir(folder):
                    self._fs.rm(folder, recursive=True)
            self._fresh(folder)

    def list_checkpoints(self, target: str | None = None) -> list[tuple[str, str]]:
        """Sorted ``(target, name)`` pairs that have a manifest, optionally of one target.

        A folder without ``manifest.json`` (a write in progress, a crash) is not listed.
        """
        prefix = layout.checkpoints_dir(self._root, target)
        with self._guard("list", f"checkpoints{'' if target is None else ' of ' + target}"):
            found = {layout.parse_manifest_path(self._root, p) for p in self._find(prefix)}
        return sorted(pair for pair in found if pair is not None)

    # -- blobs --------------------------------------------------------------------------

    def has_blob(self, digest: str) -> bool:
        """True if blob ``digest`` is stored (fresh check; listing caches are dropped)."""
        path = layout.blob_path(self._root, digest)
        with self._guard("check", f"blob {digest}"):
            self._fresh(path)
            return bool(self._fs.exists(path))

    def put_blob(self, digest: str, local_path: Path, callback: Progress | None = None) -> None:
        """Store the content of ``local_path`` as blob ``digest``.

        The caller vouches that the content hashes to ``digest`` (it is not re-hashed).
        Atomic: the blob appears whole or not at all (local: temp + fsync + rename;
        object stores: a single PUT). Idempotent:
        storing an existing blob again is skipped (local) or rewrites identical bytes.

        Args:
            callback: fsspec-style progress (``set_size``, ``relative_update``).
        """
        path = layout.blob_path(self._root, digest)
        with self._guard("upload", f"blob {digest}"):
            if self._local is not None:
                if os.path.isfile(path):
                    return
                with open(local_path, "rb") as src:
                    if callback is not None:
                        callback.set_size(os.fstat(src.fileno()).st_size)
                    localfs.copy_atomic(cast(BinaryIO, src), path, callback=callback)
                return
            from fsspec.callbacks import DEFAULT_CALLBACK

            self._makedirs(path.rpartition("/")[0])
            self._fs.put_file(os.fspath(local_path), path, callback=callback or DEFAULT_CALLBACK)
            self._fresh(path)

    def get_blob(self, digest: str, local_path: Path, callback: Progress | None = None) -> None:
        """Copy blob ``digest`` to ``local_path`` (atomically: temp sibling + rename).

        The bytes are not verified (:meth:`read_chunk` and the pipeline verify them).

        Raises:
            CheckpointNotFound: ``blob DIGEST does not exist in store URL``.
        """
        with self.open_blob(digest) as src, self._guard("download", f"blob {digest}"):
            localfs.copy_atomic(src, os.fspath(local_path), durable=False, callback=callback)

    def open_blob(self, digest: str) -> BinaryIO:
        """Open blob ``digest`` for streaming reads; the caller closes it.

        Errors raised by later ``read`` calls come from the backend untranslated.

        Raises:
            CheckpointNotFound: ``blob DIGEST does not exist in store URL``.
        """
        path = layout.blob_path(self._root, digest)
        with self._guard("open", f"blob {digest}", not_found=self._missing_blob(digest)):
            if self._local is not None:
                return open(path, "rb")  # returned to the caller, who closes it
            return cast(BinaryIO, self._fs.open(path, "rb"))

    def delete_blob(self, digest: str) -> None:
        """Remove blob ``digest``. Idempotent: a missing blob is not an error.

        Only the caller knows whether a blob is still referenced; the store does not check.
        """
        path = layout.blob_path(self._root, digest)
        with self._guard("delete", f"blob {digest}"), suppress(FileNotFoundError):
            self._fs.rm_file(path)
        self._fresh(path)

    def list_blobs(self) -> Iterator[str]:
        """Every stored blob digest, sorted. Temporary files of interrupted writes are skipped."""
        with self._guard("list", "blobs"):
            paths = self._find(layout.blobs_dir(self._root))
        found = {layout.parse_blob_path(self._root, p) for p in paths}
        yield from sorted(d for d in found if d is not None)

    def blob_size(self, digest: str) -> int:
        """Size in bytes of blob ``digest``.

        Raises:
            CheckpointNotFound: ``blob DIGEST does not exist in store URL``.
        """
        path = layout.blob_path(self._root, digest)
        with self._guard("stat", f"blob {digest}", not_found=self._missing_blob(digest)):
            if self._local is not None:
                return os.stat(path).st_size
            self._fresh(path)
            return int(self._fs.size(path))

    def read_chunk(self, digest: str, size: int | None = None) -> bytes:
        """The plain bytes of chunk ``digest`` (a blob holds an encoded chunk), decoded and
        verified against ``digest`` and, if given, its plain ``size``.

        Raises:
            CheckpointNotFound: missing. IntegrityError: corrupt. StorageError: read failed.
        """
        from cryostash.storage.chunkio import read_chunk

        return read_chunk(self, digest, size)

    # -- health -------------------------------------------------------------------------

    def exists(self) -> bool:
        """True if the root exists (a new local store has no root until the first write)."""
        with self._guard("check", "root"):
            if self._local is not None:
                return os.path.isdir(self._local)
            self._fresh(self._root)
            return bool(self._fs.exists(self._root)) if self._root else True

    def ping(self) -> float:
        """Check that the store answers; returns the round trip in seconds.

        Raises:
            StorageError: the backend could not be reached.
        """
        start = time.monotonic()
        self.exists()
        return time.monotonic() - start

    def check_writable(self) -> None:
        """Prove the store is writable: create and delete a small probe object under
        the root (creating a missing local root). For ``doctor`` and early failure.

        Raises:
            StorageError: ``store ROOT is not writable: REASON``.
        """
        probe = layout.join(self._root, f".cryostash-probe-{secrets.token_hex(8)}")
        try:
            if self._local is not None:
                localfs.write_create_only(probe, b"probe\n")
                os.unlink(probe)
            else:
                if self._root:
                    self._makedirs(self._root)
                self._fs.pipe_file(probe, b"probe\n")
                self._fs.rm_file(probe)
        except (TypeError, AttributeError, NameError, AssertionError):
            raise
        except Exception as exc:
            problem = store_problem(exc)
            if problem is not None:
                raise StorageError(
                    f"store {self.url}: {problem}", transient=is_transient(exc)
                ) from exc
            detail = str(exc) or type(exc).__name__
            if isinstance(exc, PermissionError):
                detail = f"permission denied: {detail}"
            raise StorageError(
                f"store {self.url} is not writable: {detail}", transient=is_transient(exc)
            ) from exc
