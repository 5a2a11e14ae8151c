"""A local, size-bounded cache of chunk objects (``--cache DIR|none``, ``CRYOSTASH_CACHE``).

Layout: ``DIR/<h[0:2]>/<h>`` holding the *encoded* object (the store's bytes: tag byte
plus payload), so a hit costs what a local read of the store would. Contract:

- :meth:`ChunkCache.get` returns the encoded bytes or None. Entries are not trusted:
  callers decode and verify them like downloaded objects
  (:func:`cryostash.store.codec.verified`) and :meth:`ChunkCache.discard` a bad one,
  then download it.
- :meth:`ChunkCache.put` adds an object atomically (temporary sibling + rename, no
  fsync: a cache may lose entries in a crash, never hold a partial one under its name).
  Best effort: a failing cache (full disk, permissions) never fails a transfer.
- :meth:`ChunkCache.trim` evicts least recently used entries (by access or modification
  time, whichever is later; a hit touches the entry) until the total is at most
  ``max_bytes``. Transfers call it once at the end.

Owner-only: entries are created 0600 and folders (the cache folder itself included,
when cryostash creates it) 0700, whatever the umask: an entry is process memory.

Thread-safe: methods may be called from several threads at once (every write is a
private temporary file renamed into place). Several processes may share a folder.
"""

from __future__ import annotations

import contextlib
import os
import re
import secrets
import threading
from collections.abc import Sequence
from pathlib import Path

from cryostash.errors import UsageError
from cryostash.objects import localfs
from cryostash.objects.backend import Buffer

#: A chunk's name as the cache files it: lowercase hex (a BLAKE3 digest, or an encrypted
#: store's keyed one).
_NAME = re.compile(r"^[0-9a-f]{64}$")
#: Default bound of the cache (10 GiB).
DEFAULT_MAX_BYTES = 10 << 30


class ChunkCache:
    """Chunk objects under ``root``, at most ``max_bytes`` of them after :meth:`trim`."""

    def __init__(self, root: Path | str, max_bytes: int = DEFAULT_MAX_BYTES) -> None:
        self.root = Path(root)
        self.max_bytes = max_bytes
        self._made: set[str] = set()
        self._lock = threading.Lock()
        self.hits = 0
        self.misses = 0

    def __repr__(self) -> str:
        return f"ChunkCache({str(self.root)!r}, max_bytes={self.max_bytes})"

    def path(self, digest: str) -> Path:
        """Where the object of ``digest`` lives (digest validated).

        Raises:
            UsageError: not 64 lowercase hex characters.
        """
        if not _NAME.match(digest):
            raise UsageError(
                f"invalid blob digest {digest!r}: expected 64 lowercase hex characters"
            )
        return self.root / digest[:2] / digest

    def get(self, digest: str) -> bytes | None:
        """The cached encoded object of ``digest``, or None (absent or unreadable)."""
        path = self.path(digest)
        try:
            with open(path, "rb", buffering=0) as fh:
                data = fh.read()
                with contextlib.suppress(OSError):
                    os.utime(fh.fileno())  # recently used: evicted last
        except OSError:
            with self._lock:
                self.misses += 1
            return None
        with self._lock:
            self.hits += 1
        return data

    def touch(self, digest: str) -> int | None:
        """The size of the entry of ``digest``, touched as recently used (so that a trim
        evicts other entries first); None if absent."""
        path = self.path(digest)
        try:
            size = os.stat(path).st_size
            os.utime(path)
        except OSError:
            return None
        return size

    def has(self, digest: str) -> bool:
        """True if ``digest`` is cached (no promise that it is intact)."""
        return self.path(digest).is_file()

    def put(self, digest: str, parts: Sequence[Buffer]) -> bool:
        """Cache the encoded object ``parts`` (concatenated); True if it was written.

        An existing entry is kept. Errors are swallowed (returns False).
        """
        path = self.path(digest)
        try:
            if path.exists():
                return False
            folder = str(path.parent)
            if folder not in self._made:
                localfs.makedirs(folder)  # owner-only (0700), the cache root too
                with self._lock:
                    self._made.add(folder)
            tmp = f"{folder}/.{digest}.{secrets.token_hex(6)}.tmp"
            try:
                flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC
                with os.fdopen(os.open(tmp, flags, localfs.FILE_MODE), "wb") as fh:
                    for part in parts:
                        fh.write(part)
                os.rename(tmp, path)
            finally:
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(tmp)
        except OSError:
            return False
        return True

    def discard(self, digest: str) -> None:
        """Remove the entry of ``digest`` (e.g. found corrupt); missing is fine."""
        with contextlib.suppress(OSError):
            self.path(digest).unlink()

    def usage(self) -> tuple[int, int]:
        """``(entries, bytes)`` currently cached."""
        entries, total = 0, 0
        for _, size, _ in self._entries():
            entries += 1
            total += size
        return entries, total

    def _entries(self) -> list[tuple[str, int, float]]:
        found: list[tuple[str, int, float]] = []
        try:
            prefixes = list(os.scandir(self.root))
        except OSError:
            return found
        for prefix in prefixes:
            if not prefix.is_dir(follow_symlinks=False):
                continue
            with contextlib.suppress(OSError), os.scandir(prefix.path) as it:
                for entry in it:
                    with contextlib.suppress(OSError):
                        st = entry.stat(follow_symlinks=False)
                        found.append((entry.path, st.st_size, max(st.st_atime, st.st_mtime)))
        return found

    def trim(self) -> int:
        """Evict least recently used entries until at most ``max_bytes`` remain;
        returns the number of bytes evicted. Best effort."""
        entries = self._entries()
        total = sum(size for _, size, _ in entries)
        evicted = 0
        for path, size, _ in sorted(entries, key=lambda e: e[2]):
            if total <= self.max_bytes:
                break
            with contextlib.suppress(OSError):
                os.unlink(path)
                total -= size
                evicted += size
        return evicted
