"""Prefetch: the chunks of a checkpoint, from the store into the local chunk cache.

Run on the host that will restore, while the process still runs elsewhere, so that the
restore takes every chunk from the cache and downloads nothing. Contract of
:func:`prefetch`:

- The chunks considered are the distinct non-zero chunks of ``entries``: all-zero chunks
  are recognised as a restore recognises them (:func:`cryostash.transfer.chunking.may_be_zero`,
  then the digest) and are never fetched by a restore either.
- A chunk the cache holds is not downloaded; its entry is touched (recently used), so
  that the trim at the end evicts other entries first. It is not read: the restore
  verifies every entry it uses, and drops and downloads a bad one.
- Every other chunk is downloaded once, by ``jobs`` threads (transient failures retried,
  ``attempts`` in all), decoded and verified exactly as a restore does (BLAKE3 of the
  plain bytes and the plain size the manifest records), and only then stored in the
  cache, encoded (the store's bytes). A corrupt or missing object raises IntegrityError
  naming the blob and its file, and is not cached; the remaining downloads are cancelled
  (chunks already verified stay cached).
- Memory: each thread holds at most one chunk (at most 16 MiB) at a time.
- The cache is trimmed once at the end (also after an error). ``chunks_uncached`` says
  how many of this checkpoint's chunks are not cached afterwards (that trim evicted
  them, or the cache could not be written): more than zero means the cache bound is too
  small for the checkpoint, and the restore will download those.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass
from typing import Any

from cryostash.errors import UsageError
from cryostash.store import Store
from cryostash.transfer.chunking import may_be_zero
from cryostash.transfer.progress import Progress
from cryostash.transfer.unpack import fetch_verified
from cryostash.transfer.workers import Shared, run_all
from cryostash.types import FileEntry


@dataclass(frozen=True)
class PrefetchStats:
    """What :func:`prefetch` did.

    Attributes:
        chunks_total: distinct non-zero chunks of the checkpoint.
        chunks_cached / bytes_cached: those the cache already held, their encoded size.
        chunks_downloaded / bytes_downloaded: objects fetched from the store (and
            cached), their encoded size.
        chunks_uncached: chunks of this checkpoint not cached at the end (evicted by the
            final trim, or the cache could not be written).
        retries: transient failures retried. duration_s: wall time.
    """

    chunks_total: int
    chunks_cached: int
    bytes_cached: int
    chunks_downloaded: int
    bytes_downloaded: int
    chunks_uncached: int
    retries: int
    duration_s: float

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready form."""
        return asdict(self)


def distinct_chunks(
    entries: Iterable[FileEntry], zero_name: Callable[[int], str]
) -> dict[str, tuple[int, str]]:
    """Every distinct non-zero chunk of ``entries``: digest -> (plain size, first file);
    ``zero_name`` names a chunk of that many zeros (the store's ``sealing.zero_name``)."""
    found: dict[str, tuple[int, str]] = {}
    for entry in entries:
        sizes = entry.chunk_sizes or ((entry.size,) if entry.blobs else ())
        last = len(sizes) - 1
        for n, (digest, size) in enumerate(zip(entry.blobs, sizes, strict=True)):
            if digest in found or (may_be_zero(size, n == last) and digest == zero_name(size)):
                continue
            found[digest] = (size, entry.path)
    return found


def prefetch(
    store: Store,
    entries: Iterable[FileEntry],
    *,
    jobs: int = 4,
    callback: Progress | None = None,
) -> PrefetchStats:
    """Bring every chunk of ``entries`` into the chunk cache ``store`` reads through
    (:meth:`Store.with_cache`; see the module docstring).

    Raises:
        IntegrityError: ``blob X of file Y is corrupt: ...`` or ``blob X of file Y is
            missing from store URL``.
        StorageError: the store failed (after retries).
        UsageError: ``jobs`` < 1.
    """
    if jobs < 1:
        raise UsageError(f"jobs must be at least 1, not {jobs}")
    started = time.monotonic()
    chunks = distinct_chunks(entries, store.sealing.zero_name)
    missing: list[str] = []
    cached_bytes = 0
    for digest in chunks:
        size = store.chunks.cached_size(digest)
        if size is None:
            missing.append(digest)
        else:
            cached_bytes += size
    shared = Shared(callback)
    shared.set_size(sum(chunks[d][0] for d in missing))
    lock = threading.Lock()
    counts = {"down": 0, "bytes_down": 0}

    def fetch(digest: str) -> None:
        size, path = chunks[digest]
        # Verified before it is cached (nothing unverified is), and cached by the store.
        chunk = fetch_verified(store, digest, size, f"blob {digest} of file {path}")
        shared.progress(size)
        with lock:
            counts["down"] += 1
            counts["bytes_down"] += chunk.stored_size

    retries = store.retries
    try:
        run_all(fetch, missing, jobs)
    finally:
        store.chunks.trim_cache()
    return PrefetchStats(
        chunks_total=len(chunks),
        chunks_cached=len(chunks) - len(missing),
        bytes_cached=cached_bytes,
        chunks_downloaded=counts["down"],
        bytes_downloaded=counts["bytes_down"],
        chunks_uncached=sum(1 for d in chunks if not store.chunks.is_cached(d)),
        retries=store.retries - retries,
        duration_s=time.monotonic() - started,
    )
