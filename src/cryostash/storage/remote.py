"""``FsspecBackend``: a store on any fsspec file system (S3, memory, chained URLs, ...).

- :meth:`~FsspecBackend.create` is one conditional PUT where the backend has one
  (``s3``: ``If-None-Match: *``, a 412 when taken); on ``memory://`` an exists-then-write
  under a process-wide lock (atomic there); elsewhere exists-then-write (create-only
  against this process's threads only: ``atomic_create`` is then False).
- Other hosts write to the same store: every check and listing drops fsspec's cached
  listings first, and a recursive listing leaves none behind (s3fs caches every
  sub-folder a ``find`` saw; later stats would trust those).
- An object store has no folders: nothing is made, and :meth:`~FsspecBackend.tidy` has
  nothing to do.
"""

from __future__ import annotations

import secrets
import threading
from collections.abc import Iterable, Sequence
from contextlib import suppress
from typing import Any

from cryostash import hooks
from cryostash.storage.backend import Buffer, ObjectInfo

#: Backends whose ``pipe_file(mode="create")`` is a server-side conditional write.
_NATIVE_CREATE = frozenset({"s3", "s3a"})
#: Object stores: no folders to make (``makedirs`` may even create buckets there).
_OBJECT_STORES = frozenset({"s3", "s3a", "gs", "gcs", "az", "abfs", "abfss", "adl", "oss"})
#: Serialises exists-then-write on backends without a native create-only write. For
#: ``memory://`` (process-local) this makes it atomic; elsewhere it only protects
#: against other threads of this process (``atomic_create`` is then False).
_CREATE_LOCK = threading.Lock()


def _protocol(fs: Any) -> str:
    proto = fs.protocol
    return str(proto[0] if isinstance(proto, tuple | list) else proto)


class FsspecBackend:
    """Objects under ``root`` of the fsspec file system ``fs``.

    Args:
        fs: the file system instance. root: the root in ``fs``'s own terms (no protocol).
        url: the canonical, credential-free root URL. chained: the URL chains file
            systems (``a::b``): no native create-only write is trusted then.
    """

    def __init__(self, fs: Any, root: str, url: str, *, chained: bool = False) -> None:
        self.fs = fs
        self.root = root.rstrip("/")
        self.url = url
        proto = _protocol(fs)
        self._native_create = not chained and proto in _NATIVE_CREATE
        self._folders = proto not in _OBJECT_STORES
        self.atomic_create = self._native_create or (not chained and proto == "memory")
        #: Every fsspec store counts as remote (``memory://`` and chained URLs too): no
        #: fsync, no folders to rely on, a chunk cache and more requests in flight.
        self.remote = True

    def __repr__(self) -> str:
        return f"FsspecBackend({self.url!r})"

    def path(self, key: str) -> str:
        """The path of ``key`` in the file system's own terms."""
        return "/".join([self.root, key]) if key else self.root

    def _fresh(self, path: str) -> None:
        with suppress(Exception):
            self.fs.invalidate_cache(path)

    def _makedirs_for(self, path: str) -> None:
        if self._folders:
            self.fs.makedirs(path.rpartition("/")[0], exist_ok=True)

    # -- reads -----------------------------------------------------------------------

    def get(self, key: str) -> bytes:
        path = self.path(key)
        # s3fs may stat the object first, from a folder listing cached by an earlier
        # listing of this process that predates the object: drop it (another host wrote).
        self._fresh(path)
        return bytes(self.fs.cat_file(path))

    def exists(self, key: str) -> bool:
        path = self.path(key)
        self._fresh(path)
        try:  # not ``isfile``: it answers False for any error (no bucket, no network...)
            return bool(self.fs.info(path)["type"] == "file")
        except FileNotFoundError:
            return False

    def stat(self, key: str) -> ObjectInfo:
        from cryostash.storage.inventory import modified_time

        path = self.path(key)
        self._fresh(path)
        info = self.fs.info(path)
        if info.get("type", "file") != "file":
            raise FileNotFoundError(path)
        return ObjectInfo(key, int(info.get("size") or 0), modified_time(info))

    def scan(self, prefix: str) -> list[ObjectInfo]:
        from cryostash.storage.inventory import modified_time

        folder = self.path(prefix)
        self._fresh(folder)
        try:
            found = dict(self.fs.find(folder, detail=True))
        except FileNotFoundError:
            return []
        finally:
            with suppress(Exception):
                self.fs.invalidate_cache()
        top = self.root.strip("/")
        objects = []
        for path, info in found.items():
            rel = str(path).strip("/")
            if top:
                if not rel.startswith(top + "/"):
                    continue
                rel = rel[len(top) + 1 :]
            if info.get("type", "file") == "file":
                objects.append(ObjectInfo(rel, int(info.get("size") or 0), modified_time(info)))
        return objects

    def has_any(self, prefix: str) -> bool:
        try:
            return bool(self.fs.ls(self.path(prefix), detail=False))
        except FileNotFoundError:
            return False
        except Exception:
            return True

    def root_exists(self) -> bool:
        self._fresh(self.root)
        return bool(self.fs.exists(self.root)) if self.root else True

    def top(self) -> list[ObjectInfo]:
        from cryostash.storage.inventory import modified_time

        try:
            entries = self.fs.ls(self.root, detail=True) if self.root else []
        except (FileNotFoundError, NotADirectoryError):
            return []
        return [
            ObjectInfo(
                str(e["name"]).rpartition("/")[2], int(e.get("size") or 0), modified_time(e)
            )
            for e in entries
            if isinstance(e, dict) and e.get("type", "file") == "file"
        ]

    # -- writes ----------------------------------------------------------------------

    def put(self, key: str, parts: Sequence[Buffer]) -> bool:
        path = self.path(key)
        self._makedirs_for(path)
        self.fs.pipe_file(path, b"".join(parts))
        self._fresh(path)
        hooks.reached("mid-upload")
        return True

    def create(self, key: str, data: bytes) -> None:
        path = self.path(key)
        self._makedirs_for(path)
        if self._native_create:
            self.fs.pipe_file(path, bytes(data), mode="create")
        else:
            with _CREATE_LOCK:
                self._fresh(path)
                if self.fs.exists(path):
                    raise FileExistsError(path)
                self.fs.pipe_file(path, bytes(data))
        self._fresh(path)

    def delete(self, key: str) -> None:
        path = self.path(key)
        with suppress(FileNotFoundError):
            self.fs.rm_file(path)
        self._fresh(path)

    def delete_prefix(self, prefix: str) -> None:
        folder = self.path(prefix)
        with suppress(FileNotFoundError):
            self.fs.rm(folder, recursive=True)
        self._fresh(folder)

    def batch(self, jobs: int) -> ImmediateBatch:
        return ImmediateBatch(self)

    def check_writable(self) -> None:
        probe = self.path(f".cryostash-probe-{secrets.token_hex(8)}")
        if self.root and self._folders:
            self.fs.makedirs(self.root, exist_ok=True)
        self.fs.pipe_file(probe, b"probe\n")
        self.fs.rm_file(probe)

    def tidy(self, prefix: str, *, older_than: float, keep: Iterable[str] = ()) -> int:
        return 0


class ImmediateBatch:
    """A batch whose objects are stored at once (one PUT each is durable and atomic)."""

    def __init__(self, backend: Any) -> None:
        self._backend = backend

    def add(self, key: str, parts: Sequence[Buffer]) -> bool:
        return bool(self._backend.put(key, parts))

    def commit(self) -> None:
        return None

    def discard(self) -> None:
        return None
