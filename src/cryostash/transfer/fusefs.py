"""A read-only, flat FUSE file system spoken straight over ``/dev/fuse`` (no libfuse).

Lazy restore (:mod:`cryostash.transfer.pageserve`) exposes a checkpoint's image folder
through it, so that CRIU's ``lazy-pages`` daemon reads ``pages-*.img`` from cryostash,
which fetches and verifies the covering chunks on demand.

Contract:

- One folder (the root, inode 1) holding regular files (inodes 2...), named and sized up
  front; the contents come from ``reader(name, offset, size) -> bytes``, called from one
  of ``threads`` serving threads. ``reader`` returns at most ``size`` bytes (fewer only at
  the end of the file) or raises ``OSError`` whose ``errno`` is returned to the caller
  (``EIO`` for anything else it raises). Nothing can be written, created or removed
  (``EROFS``).
- Files listed in ``direct`` are opened with ``FOPEN_DIRECT_IO``: every read reaches
  ``reader`` as the caller issued it (no page cache, no read-ahead), up to 1 MiB a request.
- :meth:`FuseMount.mount` needs root (``mount(2)`` of type ``fuse.cryostash``, with
  ``allow_other``); :meth:`FuseMount.unmount` detaches it (``MNT_DETACH``), after which the
  kernel ends the connection and the serving threads return; it is idempotent.
- :meth:`FuseMount.fail_reads` answers every read still being served, and every later
  one, with an error at once, from the calling thread (the kernel matches replies by
  request id; the serving thread's late reply is then dropped): a reader blocked on a
  read that cannot complete (a store that stopped answering) is released; the reading
  process would otherwise sit in an unkillable wait.
- The wire format is the kernel's FUSE protocol 7.31 (``include/uapi/linux/fuse.h``);
  requests this file system does not know get ``ENOSYS``.
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import os
import stat
import struct
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

Reader = Callable[[str, int, int], bytes]

_IN_HEADER = struct.Struct("<IIQQIIII")  # len, opcode, unique, nodeid, uid, gid, pid, pad
_OUT_HEADER = struct.Struct("<IiQ")  # len, error, unique
_ATTR = struct.Struct("<QQQQQQIIIIIIIIII")  # 88 bytes
_READ_IN = struct.Struct("<QQIIQII")  # fh, offset, size, read_flags, lock_owner, flags, pad
_OPEN_IN = struct.Struct("<II")  # flags, open_flags
_INIT_IN = struct.Struct("<IIII")  # major, minor, max_readahead, flags
_INIT_OUT = struct.Struct("<IIIIHHIIHHI7I")  # 64 bytes
_OPEN_OUT = struct.Struct("<QII")
_DIRENT = struct.Struct("<QQII")

_LOOKUP, _FORGET, _GETATTR, _OPEN, _READ, _STATFS, _RELEASE = 1, 2, 3, 14, 15, 17, 18
_FLUSH, _INIT, _OPENDIR, _READDIR, _RELEASEDIR, _ACCESS = 25, 26, 27, 28, 29, 34
_INTERRUPT, _DESTROY, _BATCH_FORGET = 36, 38, 42
_WRITES = frozenset({4, 6, 8, 9, 10, 11, 12, 13, 16, 21, 24, 35, 43, 45})
_NO_REPLY = frozenset({_FORGET, _BATCH_FORGET, _INTERRUPT})

_FUSE_ASYNC_READ = 1 << 0
_FUSE_MAX_PAGES = 1 << 22
_FOPEN_DIRECT_IO = 1 << 0
_FOPEN_KEEP_CACHE = 1 << 1
_MAX_IO = 1 << 20
_BUFFER = _MAX_IO + 64 * 1024
_ROOT = 1
_TIMEOUT_S = 3600
_MS_NOSUID, _MS_NODEV, _MNT_DETACH = 2, 4, 2

_libc = ctypes.CDLL(None, use_errno=True)


class FuseMount:
    """A read-only flat folder at ``mountpoint`` (see the module docstring).

    Args:
        mountpoint: an existing empty folder.
        sizes: file name -> size in bytes.
        reader: the contents (see the module docstring).
        direct: names opened with direct I/O.
        threads: serving threads (each handles one request at a time).
    """

    def __init__(
        self,
        mountpoint: Path,
        sizes: Mapping[str, int],
        reader: Reader,
        *,
        direct: Sequence[str] = (),
        threads: int = 4,
    ) -> None:
        self.mountpoint = Path(mountpoint)
        self._names = sorted(sizes)
        self._sizes = dict(sizes)
        self._inodes = {name: i + 2 for i, name in enumerate(self._names)}
        self._direct = frozenset(direct)
        self._reader = reader
        self._threads_wanted = threads
        self._threads: list[threading.Thread] = []
        self._fd = -1
        self._mounted = False
        self._lock = threading.Lock()
        self._now = int(time.time())
        self._reads: set[int] = set()  # request ids of reads being served
        self._read_error = 0  # once set (fail_reads): every read gets -this at once

    # -- life cycle ------------------------------------------------------------

    def mount(self) -> None:
        """Mount and start serving.

        Raises:
            OSError: ``/dev/fuse`` cannot be opened or ``mount(2)`` failed (not root,
                no FUSE in this kernel or container).
        """
        self._fd = os.open("/dev/fuse", os.O_RDWR | os.O_CLOEXEC)
        options = f"fd={self._fd},rootmode=40000,user_id=0,group_id=0,allow_other"
        ret = _libc.mount(
            b"cryostash",
            os.fsencode(self.mountpoint),
            b"fuse.cryostash",
            ctypes.c_ulong(_MS_NOSUID | _MS_NODEV),
            options.encode(),
        )
        if ret != 0:
            code = ctypes.get_errno()
            os.close(self._fd)
            self._fd = -1
            raise OSError(code, f"mount FUSE at {self.mountpoint}: {os.strerror(code)}")
        self._mounted = True
        for n in range(self._threads_wanted):
            thread = threading.Thread(target=self._serve, name=f"fuse-{n}", daemon=True)
            thread.start()
            self._threads.append(thread)

    def unmount(self, timeout: float = 5.0) -> None:
        """Detach the mount, wait up to ``timeout`` s for the serving threads, close."""
        with self._lock:
            if self._mounted:
                _libc.umount2(os.fsencode(self.mountpoint), _MNT_DETACH)
                self._mounted = False
        deadline = time.monotonic() + timeout
        for thread in self._threads:
            thread.join(max(0.0, deadline - time.monotonic()))
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1

    def fail_reads(self, code: int = errno.EIO) -> None:
        """Answer every read being served, and every later read, with ``code`` now."""
        with self._lock:
            self._read_error = code
            pending, self._reads = self._reads, set()
            fd = self._fd
        for unique in sorted(pending):
            # OSError: unmounted, or the request was interrupted meanwhile.
            with contextlib.suppress(OSError):
                os.write(fd, _OUT_HEADER.pack(_OUT_HEADER.size, -code, unique))

    # -- serving ---------------------------------------------------------------

    def _serve(self) -> None:
        fd = self._fd
        while True:
            try:
                request = os.read(fd, _BUFFER)
            except OSError as exc:
                if exc.errno in (errno.EINTR, errno.EAGAIN, errno.ENOENT):
                    continue
                return  # ENODEV: unmounted; EBADF: closed
            if len(request) < _IN_HEADER.size:
                continue
            _, opcode, unique, nodeid, *_ = _IN_HEADER.unpack_from(request)
            if opcode in _NO_REPLY:
                continue
            with self._lock:
                failed = self._read_error if opcode == _READ else 0
                if opcode == _READ and not failed:
                    self._reads.add(unique)
            try:
                if failed:
                    raise OSError(failed, "reads failed")
                body = self._handle(opcode, nodeid, memoryview(request)[_IN_HEADER.size :])
                error = 0
            except OSError as exc:
                body, error = b"", -(exc.errno or errno.EIO)
            except Exception:
                body, error = b"", -errno.EIO
            with self._lock:
                if opcode == _READ and not failed and unique not in self._reads:
                    continue  # fail_reads answered it already
                self._reads.discard(unique)
            reply = _OUT_HEADER.pack(_OUT_HEADER.size + len(body), error, unique) + body
            try:
                os.write(fd, reply)
            except OSError as exc:
                if exc.errno == errno.ENODEV:
                    return
                # ENOENT: the request was interrupted meanwhile; nothing to do
            if opcode == _DESTROY:
                return

    def _handle(self, opcode: int, nodeid: int, body: memoryview) -> bytes:
        if opcode == _INIT:
            major, minor, readahead, _flags = _INIT_IN.unpack_from(body)
            if major != 7:
                raise OSError(errno.EPROTO, "unsupported FUSE major version")
            return _INIT_OUT.pack(
                7, min(minor, 31), readahead, _FUSE_ASYNC_READ | _FUSE_MAX_PAGES,
                16, 12, _MAX_IO, 1, _MAX_IO // 4096, 0, 0, *([0] * 7),
            )
        if opcode == _LOOKUP:
            name = bytes(body).split(b"\0", 1)[0].decode(errors="replace")
            if nodeid != _ROOT or name not in self._inodes:
                raise OSError(errno.ENOENT, name)
            ino = self._inodes[name]
            return struct.pack("<QQQQII", ino, 0, _TIMEOUT_S, _TIMEOUT_S, 0, 0) + self._attr(ino)
        if opcode == _GETATTR:
            return struct.pack("<QII", _TIMEOUT_S, 0, 0) + self._attr(nodeid)
        if opcode == _OPEN:
            flags, _ = _OPEN_IN.unpack_from(body)
            if flags & (os.O_WRONLY | os.O_RDWR | os.O_TRUNC):
                raise OSError(errno.EROFS, "read-only")
            name = self._name(nodeid)
            open_flags = _FOPEN_DIRECT_IO if name in self._direct else _FOPEN_KEEP_CACHE
            return _OPEN_OUT.pack(0, open_flags, 0)
        if opcode == _READ:
            _fh, offset, size, *_ = _READ_IN.unpack_from(body)
            name = self._name(nodeid)
            end = min(offset + size, self._sizes[name])
            return self._reader(name, offset, end - offset) if end > offset else b""
        if opcode == _OPENDIR:
            return _OPEN_OUT.pack(0, 0, 0)
        if opcode == _READDIR:
            _fh, offset, size, *_ = _READ_IN.unpack_from(body)
            return self._dirents(offset, size)
        if opcode in (_RELEASE, _RELEASEDIR, _FLUSH, _ACCESS, _DESTROY):
            return b""
        if opcode == _STATFS:
            total = sum(self._sizes.values()) // 4096 + 1
            return struct.pack("<QQQQQIII6I", total, 0, 0, len(self._names) + 1, 0,
                               4096, 255, 4096, 0, *([0] * 6))
        if opcode in _WRITES:
            raise OSError(errno.EROFS, "read-only")
        raise OSError(errno.ENOSYS, "not implemented")

    def _name(self, nodeid: int) -> str:
        index = nodeid - 2
        if not 0 <= index < len(self._names):
            raise OSError(errno.ENOENT, "no such inode")
        return self._names[index]

    def _attr(self, nodeid: int) -> bytes:
        if nodeid == _ROOT:
            mode, size, nlink = stat.S_IFDIR | 0o500, 0, 2
        else:
            mode, size, nlink = stat.S_IFREG | 0o400, self._sizes[self._name(nodeid)], 1
        now = self._now
        blocks = (size + 511) // 512
        return _ATTR.pack(nodeid, size, blocks, now, now, now, 0, 0, 0,
                          mode, nlink, 0, 0, 0, 4096, 0)

    def _dirents(self, offset: int, size: int) -> bytes:
        entries = [(".", _ROOT, 4), ("..", _ROOT, 4)]
        entries += [(name, self._inodes[name], 8) for name in self._names]
        out = bytearray()
        for index in range(offset, len(entries)):
            name, ino, kind = entries[index]
            raw = name.encode()
            record = _DIRENT.pack(ino, index + 1, len(raw), kind) + raw
            record += b"\0" * (-len(record) % 8)
            if len(out) + len(record) > size:
                break
            out += record
        return bytes(out)
