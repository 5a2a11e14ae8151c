"""``LocalBackend``: a store on the local disk (plain paths and ``file://`` URLs).

Crash-safe writes (dvc-objects ``as_atomic``, restic's local backend, helpers in
:mod:`cryostash.objects.localfs`): a hidden temporary sibling (``.NAME.<random>.tmp``),
fsync, then one atomic ``rename`` (:meth:`~LocalBackend.put`) or ``link``
(:meth:`~LocalBackend.create`: create-only, the kernel decides a race), then the folder
is fsynced. A crash can leave a temporary file behind (``gc`` removes it), never a partial
file under a final name. :meth:`~LocalBackend.batch` defers every ``fdatasync`` to one
barrier per batch (see :class:`LocalBatch`). Imports no fsspec. Errors leave as the
sentinels of :mod:`cryostash.objects.errors` (by the ``OSError``'s class and errno).

Owner-only: every file is created 0600 and every folder 0700, whatever the umask.

No symbolic links below the root (the root itself may be one): before writing or
deleting, every folder on the way from the root to the key is checked with ``lstat``
(and, for :meth:`~LocalBackend.delete_prefix`, :meth:`~LocalBackend.scan` and
:meth:`~LocalBackend.tidy`, the folder itself); a link raises ``OSError(ELOOP)`` naming
it, so nothing outside the root is written or deleted through one (``rm``, ``prune`` and
``gc`` running as root included). :meth:`~LocalBackend.scan` raises the same for a link
anywhere under its folder, so ``verify``, ``gc`` and ``catalog rebuild`` report it. A
final component that is a link is unlinked by :meth:`~LocalBackend.delete`, never
followed; ``shutil.rmtree`` does not follow links inside the folders it removes.
"""

from __future__ import annotations

import contextlib
import errno
import functools
import os
import secrets
import stat
import threading
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime

from cryostash import hooks
from cryostash.objects import localfs
from cryostash.objects.backend import Buffer, ObjectInfo
from cryostash.objects.errors import NotFound, boundary
from cryostash.objects.key import Key


def _write_all(fd: int, parts: Sequence[Buffer]) -> None:
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


def _link_error(path: str, root: str) -> OSError:
    try:
        target = os.readlink(path)
    except OSError:
        target = "?"
    return OSError(
        errno.ELOOP,
        f"{path} is a symbolic link (to {target}) inside the store {root}: cryostash never "
        "follows links in a store; replace it with what it points to, or remove it",
    )


class LocalBackend:
    """Objects as files under the folder ``root`` (absolute; created on first write)."""

    remote = False
    atomic_create = True

    def __init__(self, root: str) -> None:
        self.root = root.rstrip("/") or "/"
        self.url = self.root

    def __repr__(self) -> str:
        return f"LocalBackend({self.root!r})"

    def path(self, rel: str) -> str:
        """The file of ``rel`` (a key's path, or a prefix)."""
        return os.path.join(self.root, *rel.split("/")) if rel else self.root

    def checked(self, rel: str, *, whole: bool = False) -> str:
        """The file of ``rel``, after checking that no existing folder between the root
        and it (with ``whole``, nor ``rel`` itself) is a symbolic link.

        Raises:
            OSError: ``ELOOP``, naming the link and where it points.
        """
        parts = rel.split("/") if rel else []
        current = self.root
        for part in parts if whole else parts[:-1]:
            current = os.path.join(current, part)
            try:
                st = os.lstat(current)
            except FileNotFoundError:
                break
            if stat.S_ISLNK(st.st_mode):
                raise _link_error(current, self.root)
        return self.path(rel)

    # -- reads -----------------------------------------------------------------------

    def get(self, key: Key) -> bytes:
        with boundary():  # a folder is not an object: IsADirectoryError is NotFound
            return localfs.read_file(self.path(key.path))

    def exists(self, key: Key) -> bool:
        return os.path.isfile(self.path(key.path))

    def stat(self, key: Key) -> ObjectInfo:
        path = self.path(key.path)
        with boundary():
            st = os.stat(path)
        if not stat.S_ISREG(st.st_mode):
            raise NotFound(f"{path} is not a file")
        return ObjectInfo(key.path, st.st_size, datetime.fromtimestamp(st.st_mtime, UTC))

    def scan(self, prefix: str) -> list[ObjectInfo]:
        with boundary():
            return self._scan(prefix)

    def _scan(self, prefix: str) -> list[ObjectInfo]:
        top = self.checked(prefix, whole=True)
        found: list[ObjectInfo] = []
        for dirpath, dirs, files in os.walk(top):
            rel_dir = os.path.relpath(dirpath, self.root).replace(os.sep, "/")
            for name in dirs:
                if os.path.islink(os.path.join(dirpath, name)):
                    raise _link_error(os.path.join(dirpath, name), self.root)
            for name in files:
                with contextlib.suppress(FileNotFoundError):
                    st = os.lstat(os.path.join(dirpath, name))
                    if stat.S_ISLNK(st.st_mode):
                        raise _link_error(os.path.join(dirpath, name), self.root)
                    key = name if rel_dir == "." else f"{rel_dir}/{name}"
                    modified = datetime.fromtimestamp(st.st_mtime, UTC)
                    found.append(ObjectInfo(key, st.st_size, modified))
        return found

    def top(self) -> list[ObjectInfo]:
        found: list[ObjectInfo] = []
        try:
            entries = list(os.scandir(self.root))
        except OSError:
            return found
        for entry in entries:
            with contextlib.suppress(OSError):
                if entry.is_file(follow_symlinks=False):
                    st = entry.stat(follow_symlinks=False)
                    modified = datetime.fromtimestamp(st.st_mtime, UTC)
                    found.append(ObjectInfo(entry.name, st.st_size, modified))
        return found

    def has_any(self, prefix: str) -> bool:
        try:
            return any(os.scandir(self.path(prefix)))
        except FileNotFoundError:
            return False
        except OSError:
            return True

    def root_exists(self) -> bool:
        return os.path.isdir(self.root)

    # -- writes ----------------------------------------------------------------------

    def put(self, key: Key, parts: Sequence[Buffer]) -> bool:
        with boundary():
            path = self.checked(key.path)
            if os.path.exists(path):
                return False
            tmp = self._write_temp(path, parts, durable=True)
            try:
                os.rename(tmp, path)
            except BaseException:
                _unlink_all([tmp])
                raise
            localfs.fsync_dir(os.path.dirname(path))
        hooks.reached("mid-upload")
        return True

    def _write_temp(self, path: str, parts: Sequence[Buffer], *, durable: bool) -> str:
        """Write ``parts`` to a new temporary sibling of ``path``; fdatasync it when
        ``durable``, else start its write-out. Returns its path (removed on failure)."""
        folder = os.path.dirname(path)
        if not os.path.isdir(folder):
            localfs.makedirs(folder)
        tmp = localfs.temp_name(path)
        flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC
        try:
            fd = os.open(tmp, flags, localfs.FILE_MODE)
        except FileNotFoundError:  # gc removed the empty folder meanwhile: once more
            localfs.makedirs(folder)
            fd = os.open(tmp, flags, localfs.FILE_MODE)
        try:
            try:
                _write_all(fd, parts)
                if durable:
                    os.fdatasync(fd)
                else:
                    _start_writeback()(fd)
            finally:
                os.close(fd)
        except BaseException:
            _unlink_all([tmp])
            raise
        return tmp

    def create(self, key: Key, data: bytes) -> None:
        with boundary():
            localfs.write_create_only(self.checked(key.path), bytes(data))

    def delete(self, key: Key) -> None:
        with boundary():
            path = self.checked(key.path)
            with contextlib.suppress(FileNotFoundError):
                os.unlink(path)

    def delete_prefix(self, prefix: str) -> None:
        import shutil

        with boundary():
            folder = self.checked(prefix, whole=True)
            if os.path.isdir(folder):
                shutil.rmtree(folder, ignore_errors=False, onerror=None)

    def batch(self, jobs: int) -> LocalBatch:
        return LocalBatch(self, jobs)

    def check_writable(self) -> None:
        probe = os.path.join(self.root, f".cryostash-probe-{secrets.token_hex(8)}")
        with boundary():
            localfs.write_create_only(probe, b"probe\n")
            os.unlink(probe)

    def tidy(self, prefix: str, *, older_than: float, keep: Iterable[str] = ()) -> int:
        with boundary():
            top = self.checked(prefix, whole=True)
        kept: set[str] = set()
        for key in keep:
            path = self.path(key)
            while path.startswith(top + os.sep):
                kept.add(path)
                path = os.path.dirname(path)
        removed = 0
        for dirpath, _dirs, _files in sorted(os.walk(top), key=lambda w: -len(w[0])):
            if dirpath == top or dirpath in kept:
                continue
            with contextlib.suppress(OSError):
                if os.stat(dirpath).st_mtime <= older_than:
                    os.rmdir(dirpath)
                    removed += 1
        return removed


class LocalBatch:
    """Local objects written now and made durable, then visible, together by :meth:`commit`.

    :meth:`add` writes each object to a temporary sibling and only starts its write-out
    (asynchronous: the disk works while the caller hashes and compresses the next chunks).
    :meth:`commit` is the one durability barrier: it ``fdatasync``-s every temporary file
    (``jobs`` at a time), renames each into place and fsyncs the folders. Until then the
    objects are invisible (a crash leaves temporary files that ``gc`` removes).
    """

    def __init__(self, backend: LocalBackend, jobs: int = 4) -> None:
        self._backend = backend
        self._jobs = max(1, jobs)
        self._lock = threading.Lock()
        self._temps: list[tuple[str, str]] = []  # (temporary, final) paths

    def add(self, key: Key, parts: Sequence[Buffer]) -> bool:
        with boundary():
            path = self._backend.checked(key.path)
            if os.path.exists(path):
                return False
            tmp = self._backend._write_temp(path, parts, durable=False)
        with self._lock:
            self._temps.append((tmp, path))
        return True

    def commit(self) -> None:
        with self._lock:
            temps, self._temps = self._temps, []
        with boundary():
            self._commit(temps)

    def _commit(self, temps: list[tuple[str, str]]) -> None:
        try:
            if len(temps) > 1 and self._jobs > 1:
                with ThreadPoolExecutor(max_workers=self._jobs) as pool:
                    list(pool.map(_sync_file, (tmp for tmp, _ in temps)))
            else:
                for tmp, _ in temps:
                    _sync_file(tmp)
            for done, (tmp, final) in enumerate(temps):
                os.rename(tmp, final)
                if not done:
                    hooks.reached("mid-upload")
            for folder in sorted({os.path.dirname(final) for _, final in temps}):
                localfs.fsync_dir(folder)
        except BaseException:
            _unlink_all(tmp for tmp, _ in temps)
            raise

    def discard(self) -> None:
        with self._lock:
            temps, self._temps = self._temps, []
        _unlink_all(tmp for tmp, _ in temps)
