"""Serve a checkpoint's memory-page files from the chunk store, on demand (lazy restore).

:class:`PageSource` answers ``read(name, offset, size)`` for the files of a manifest
(CRIU's ``pages-*.img``) without the files ever existing on disk: the chunks covering
the range are fetched through :meth:`~cryostash.store.chunks.Chunks.fetch` (the
store's chunk cache first when it reads through one, then the store) and **verified
(BLAKE3 and size) before a byte of them is returned**; all-zero chunks are recognised
by their digest and never fetched. :mod:`cryostash.transfer.fusefs` puts these reads
behind a file system that CRIU's ``lazy-pages`` daemon reads.

Contract:

- A read first serves what is already fetched; a chunk no one has fetched yet is
  fetched in the reading thread (a page fault waits for one chunk, not for a queue).
- :meth:`PageSource.start_streaming` starts ``jobs`` threads fetching every chunk in file
  order ahead of CRIU, holding at most ``window`` bytes of fetched but unread chunks; a
  chunk is dropped once every byte of it has been read (CRIU reads each page once).
- The first failure (corrupt or missing chunk, store unreachable after its retries) is
  final: ``on_failure(reason)`` is called once, and **no read returns** ``EIO`` **before
  it has returned** (neither the failing read nor any other, in any thread), so the
  caller can kill the restored process while its missing pages are still held back;
  every later read fails with ``EIO`` too. ``reason`` names the chunk and its file
  (``blob DIGEST of file pages-1.img ...``) and, for a store failure, the store and why
  (``... could not be fetched: cannot read blob DIGEST in store URL: cannot connect to
  the endpoint: ...``).
- Memory: at most ``window`` bytes of streamed chunks plus one chunk per reading thread.
"""

from __future__ import annotations

import bisect
import errno
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

from cryostash.store import Store
from cryostash.transfer.chunking import may_be_zero
from cryostash.transfer.unpack import fetch_verified
from cryostash.types import FileEntry

DEFAULT_WINDOW = 128 << 20


@dataclass(frozen=True)
class _Piece:
    offset: int
    size: int
    digest: str | None  # None: an all-zero chunk


class PageSource:
    """Reads of ``entries`` (by file name) served from ``store`` (see module docstring).

    Args:
        store: the store, reading through its chunk cache if it has one.
        entries: the manifest entries served (flat names: ``pages-1.img``).
        jobs: streaming threads.
        window: bytes of streamed chunks held unread at most.
        on_failure: called once with the reason of the first failure; every read that
            fails waits until it has returned.
    """

    def __init__(
        self,
        store: Store,
        entries: Sequence[FileEntry],
        *,
        jobs: int = 4,
        window: int = DEFAULT_WINDOW,
        on_failure: Callable[[str], None] = lambda reason: None,
    ) -> None:
        self._store = store
        self._jobs = max(1, jobs)
        self._window = window
        self._on_failure = on_failure
        self._pieces: dict[str, list[_Piece]] = {}
        self._file_sizes: dict[str, int] = {}
        self._starts: dict[str, list[int]] = {}
        self._sizes: dict[str, int] = {}
        self._what: dict[str, str] = {}
        self._left: dict[str, int] = {}  # digest -> bytes of its places not yet read
        self._order: list[str] = []  # distinct non-zero digests, first place first
        for entry in entries:
            self._index(entry)
        self._cond = threading.Condition()
        self._ready: dict[str, bytes | memoryview] = {}
        self._inflight: set[str] = set()
        self._done: set[str] = set()
        self._held = 0
        self._stopping = False
        self.failure: str | None = None
        self._handled = threading.Event()  # set once on_failure has returned
        self._threads: list[threading.Thread] = []
        self._next = iter(self._order)
        self._counts = dict.fromkeys(
            ("chunks_on_demand", "chunks_streamed", "chunks_from_cache", "bytes_from_cache",
             "chunks_from_store", "bytes_from_store", "bytes_served", "reads"), 0,
        )
        self.started = time.monotonic()
        self.finished: float | None = None

    def _index(self, entry: FileEntry) -> None:
        sizes = entry.chunk_sizes or ((entry.size,) if entry.blobs else ())
        pieces: list[_Piece] = []
        offset, last = 0, len(sizes) - 1
        zero_name = self._store.sealing.zero_name
        for n, (digest, size) in enumerate(zip(entry.blobs, sizes, strict=True)):
            if may_be_zero(size, n == last) and digest == zero_name(size):
                pieces.append(_Piece(offset, size, None))
            else:
                pieces.append(_Piece(offset, size, digest))
                if digest not in self._sizes:
                    self._order.append(digest)
                    self._what[digest] = f"blob {digest} of file {entry.path}"
                self._sizes[digest] = size
                self._left[digest] = self._left.get(digest, 0) + size
            offset += size
        self._pieces[entry.path] = pieces
        self._file_sizes[entry.path] = entry.size
        self._starts[entry.path] = [p.offset for p in pieces]

    @property
    def names(self) -> list[str]:
        """The file names served."""
        return list(self._pieces)

    def file_size(self, name: str) -> int:
        """The size of file ``name``."""
        return self._file_sizes[name]

    # -- reads -----------------------------------------------------------------

    def read(self, name: str, offset: int, size: int) -> bytes:
        """``size`` bytes of file ``name`` from ``offset`` (fewer at its end), verified.

        Raises:
            OSError: ``ENOENT`` for a name not served; ``EIO`` after a failure.
        """
        if name not in self._pieces:
            raise OSError(errno.ENOENT, name)
        pieces, starts = self._pieces[name], self._starts[name]
        out = bytearray()
        index = max(0, bisect.bisect_right(starts, offset) - 1)
        end = offset + size
        while index < len(pieces) and pieces[index].offset < end:
            piece = pieces[index]
            lo = max(offset, piece.offset) - piece.offset
            hi = min(end, piece.offset + piece.size) - piece.offset
            if piece.digest is None:
                out += bytes(hi - lo)
            else:
                out += self._chunk(piece.digest)[lo:hi]
                self._consumed(piece.digest, hi - lo)
            index += 1
        with self._cond:
            self._counts["reads"] += 1
            self._counts["bytes_served"] += len(out)
        return bytes(out)

    def _chunk(self, digest: str, *, streamed: bool = False) -> bytes | memoryview:
        """The verified plain bytes of ``digest``: fetched now unless already there."""
        with self._cond:
            while (
                self.failure is None and digest not in self._ready and digest in self._inflight
            ):
                self._cond.wait()
            if self.failure is None:
                if digest in self._ready:
                    return self._ready[digest]
                self._inflight.add(digest)
        if self.failure is not None:
            self._handled.wait()  # on_failure first: see the module docstring
            raise OSError(errno.EIO, self.failure)
        what = self._what[digest]
        try:
            chunk = fetch_verified(self._store, digest, self._sizes[digest], what)
        except Exception as exc:
            reason = str(exc) or type(exc).__name__
            if what not in reason:  # a store failure names the blob, not its file
                reason = f"{what} could not be fetched: {reason}"
            self._fail(reason)
            raise OSError(errno.EIO, reason) from exc
        with self._cond:
            self._inflight.discard(digest)
            self._ready[digest] = chunk.plain
            self._held += self._sizes[digest]
            source = "cache" if chunk.from_cache else "store"
            self._counts[f"chunks_from_{source}"] += 1
            self._counts[f"bytes_from_{source}"] += chunk.stored_size
            self._counts["chunks_streamed" if streamed else "chunks_on_demand"] += 1
            self._cond.notify_all()
            return chunk.plain

    def _consumed(self, digest: str, nbytes: int) -> None:
        with self._cond:
            self._left[digest] -= nbytes
            if self._left[digest] <= 0 and digest in self._ready:
                del self._ready[digest]
                self._done.add(digest)
                self._held -= self._sizes[digest]
                self._cond.notify_all()

    def _fail(self, reason: str) -> None:
        """Record the first failure, run ``on_failure`` once; return once it has run."""
        with self._cond:
            first = self.failure is None
            if first:
                self.failure = reason
            self._cond.notify_all()
        if first:
            try:
                self._on_failure(reason)
            finally:
                self._handled.set()
        self._handled.wait()

    # -- streaming -------------------------------------------------------------

    def start_streaming(self) -> None:
        """Start the threads that fetch every chunk in file order (see module docstring)."""
        for n in range(self._jobs):
            thread = threading.Thread(target=self._stream, name=f"stream-{n}", daemon=True)
            thread.start()
            self._threads.append(thread)

    def _claim(self) -> Iterator[str]:
        while True:
            with self._cond:
                digest = next(self._next, None)
                if digest is None:
                    return
                while (
                    self._held >= self._window and not self._stopping and self.failure is None
                ):
                    self._cond.wait(0.5)
                if self._stopping or self.failure is not None:
                    return
                if digest in self._done or digest in self._ready or digest in self._inflight:
                    continue
            yield digest

    def _stream(self) -> None:
        for digest in self._claim():
            try:
                self._chunk(digest, streamed=True)
            except OSError:
                return

    def stop(self, timeout: float = 10.0) -> None:
        """Stop streaming and wait (up to ``timeout`` s) for the threads."""
        with self._cond:
            self._stopping = True
            self._cond.notify_all()
        deadline = time.monotonic() + timeout
        for thread in self._threads:
            thread.join(max(0.0, deadline - time.monotonic()))
        if self.finished is None:
            self.finished = time.monotonic()
        self._store.chunks.trim_cache()

    def stats(self) -> dict[str, Any]:
        """Counters: chunks fetched on demand (a read waited) or streamed ahead, chunks and
        stored bytes from the cache and from the store, bytes served, reads."""
        with self._cond:
            return dict(self._counts)
