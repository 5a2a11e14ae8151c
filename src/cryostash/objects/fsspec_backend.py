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
- Errors: everything the file system raises leaves as a sentinel of
  :mod:`cryostash.objects.errors` (:func:`cryostash.objects.fsspec_errors.classify`),
  the library's exception as its cause.
"""

from __future__ import annotations

import functools
import secrets
import threading
from collections.abc import Iterable, Mapping, Sequence
from contextlib import suppress
from datetime import UTC, datetime
from typing import Any

from cryostash import hooks
from cryostash.objects.backend import Buffer, ObjectInfo
from cryostash.objects.errors import NotFound, boundary
from cryostash.objects.fsspec_errors import classify
from cryostash.objects.key import Key

#: Backends whose ``pipe_file(mode="create")`` is a server-side conditional write.
_NATIVE_CREATE = frozenset({"s3", "s3a"})
#: Object stores: no folders to make (``makedirs`` may even create buckets there).
_OBJECT_STORES = frozenset({"s3", "s3a", "gs", "gcs", "az", "abfs", "abfss", "adl", "oss"})
#: Serialises exists-then-write on backends without a native create-only write. For
#: ``memory://`` (process-local) this makes it atomic; elsewhere it only protects
#: against other threads of this process (``atomic_create`` is then False).
_CREATE_LOCK = threading.Lock()


#: Every file system call runs inside it: what fsspec raises leaves as a sentinel.
_boundary = functools.partial(boundary, classify)
#: Keys under which fsspec implementations report a modification (or creation) time.
_TIME_KEYS = ("mtime", "LastModified", "last_modified", "modified", "updated", "created")


def modified_time(info: Mapping[str, Any]) -> datetime | None:
    """The modification time in an fsspec ``info`` dict, as aware UTC, or None."""
    for key in _TIME_KEYS:
        value = info.get(key)
        if isinstance(value, datetime):
            return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)
        if isinstance(value, int | float) and not isinstance(value, bool):
            return datetime.fromtimestamp(float(value), UTC)
        if isinstance(value, str):
            with suppress(ValueError):
                parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
                return parsed.replace(tzinfo=UTC) if parsed.tzinfo is None else parsed
    return None


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

    def path(self, rel: str) -> str:
        """The path of ``rel`` (a key's path, or a prefix) in the file system's own terms."""
        return "/".join([self.root, rel]) if rel else self.root

    def _fresh(self, path: str) -> None:
        with suppress(Exception):
            self.fs.invalidate_cache(path)

    def _makedirs_for(self, path: str) -> None:
        if self._folders:
            self.fs.makedirs(path.rpartition("/")[0], exist_ok=True)

    # -- reads -----------------------------------------------------------------------

    def get(self, key: Key) -> bytes:
        path = self.path(key.path)
        # s3fs may stat the object first, from a folder listing cached by an earlier
        # listing of this process that predates the object: drop it (another host wrote).
        self._fresh(path)
        with _boundary():
            return bytes(self.fs.cat_file(path))

    def exists(self, key: Key) -> bool:
        path = self.path(key.path)
        self._fresh(path)
        with _boundary():
            try:  # not ``isfile``: it answers False for any error (no bucket, no network...)
                return bool(self.fs.info(path)["type"] == "file")
            except FileNotFoundError:
                return False

    def stat(self, key: Key) -> ObjectInfo:
        path = self.path(key.path)
        self._fresh(path)
        with _boundary():
            info = self.fs.info(path)
        if info.get("type", "file") != "file":
            raise NotFound(f"{path} is not an object")
        return ObjectInfo(key.path, int(info.get("size") or 0), modified_time(info))

    def scan(self, prefix: str) -> list[ObjectInfo]:
        folder = self.path(prefix)
        self._fresh(folder)
        try:
            with _boundary():
                found = dict(self.fs.find(folder, detail=True))
        except NotFound:
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
        with _boundary():
            return bool(self.fs.exists(self.root)) if self.root else True

    def top(self) -> list[ObjectInfo]:
        try:
            with _boundary():
                entries = self.fs.ls(self.root, detail=True) if self.root else []
        except NotFound:
            return []
        return [
            ObjectInfo(
                str(e["name"]).rpartition("/")[2], int(e.get("size") or 0), modified_time(e)
            )
            for e in entries
            if isinstance(e, dict) and e.get("type", "file") == "file"
        ]

    # -- writes ----------------------------------------------------------------------

    def put(self, key: Key, parts: Sequence[Buffer]) -> bool:
        path = self.path(key.path)
        with _boundary():
            self._makedirs_for(path)
            self.fs.pipe_file(path, b"".join(parts))
        self._fresh(path)
        hooks.reached("mid-upload")
        return True

    def create(self, key: Key, data: bytes) -> None:
        path = self.path(key.path)
        with _boundary():
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

    def delete(self, key: Key) -> None:
        path = self.path(key.path)
        with suppress(NotFound), _boundary():
            self.fs.rm_file(path)
        self._fresh(path)

    def delete_prefix(self, prefix: str) -> None:
        folder = self.path(prefix)
        with suppress(NotFound), _boundary():
            self.fs.rm(folder, recursive=True)
        self._fresh(folder)

    def batch(self, jobs: int) -> ImmediateBatch:
        return ImmediateBatch(self)

    def check_writable(self) -> None:
        probe = self.path(f".cryostash-probe-{secrets.token_hex(8)}")
        with _boundary():
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

    def add(self, key: Key, parts: Sequence[Buffer]) -> bool:
        return bool(self._backend.put(key, parts))

    def commit(self) -> None:
        return None

    def discard(self) -> None:
        return None
