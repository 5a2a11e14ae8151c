"""Create side: image folder -> chunks in the store, pipelined.

Stages, overlapping, with bounded queues (memory stays bounded whatever the file sizes):

1. readers (two threads): map each file read-only (chunks are views of the page cache,
   no file is ever read whole into RAM) and cut it with FastCDC; two hashers hash each
   chunk (BLAKE3; runs of zeros are recognised with a memcmp and take a cached digest),
   and a thread per large file hashes the whole file; they feed a queue of at most
   ``4 * jobs`` chunks. Given a kept image (``baseline``: live migration's last
   pre-copy, :mod:`cryostash.transfer.baseline`), a file also kept under its path is
   chunked against the kept one (:func:`~cryostash.transfer.resync.rechunk`): a chunk
   proven equal to a kept chunk by memcmp takes its name without being cut or hashed,
   and a file equal to the kept one, byte for byte, takes its whole-file digest too
   (the whole file is hashed, alongside, only from its first difference on);
2. the coordinator (the calling thread, the only one that calls ``reserve``): collects
   distinct chunks in batches and asks ``reserve`` (the catalog) which are new to it;
   chunks the catalog already knew are not uploaded (nor is the store asked);
3. uploaders (``jobs`` threads, at most ``2 * jobs`` chunks in flight): for a chunk the
   catalog did not know, ask the store whether it has it (where asking pays:
   :meth:`~cryostash.store.chunks.ChunkBatch.present`), else encode it (zstd, or raw
   when it does not compress) and store it; a store that reads through a chunk cache
   also caches it.

A chunk is uploaded at most once per call, however often it occurs. Transient store
failures are retried by the store (its retrying backend). On any failure the stages stop
and the first error is raised. Every chunk goes through one
:class:`~cryostash.store.chunks.ChunkBatch`: on the local disk each is written to a
temporary file whose write-out starts at once, and before :func:`pack` returns they are
all ``fdatasync``-ed, renamed into place and their folders fsynced — one barrier per
call, not one synchronous write per chunk — so the manifest that follows never names a
blob a crash could lose; after a failure their temporary files are removed (nothing
new is left). On other stores the chunks stored before a failure stay (they are
content-addressed; ``gc`` removes unreferenced ones).
"""

from __future__ import annotations

import queue
import threading
import time
from collections.abc import Callable, Mapping, Sequence, Set
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from cryostash.errors import StorageError
from cryostash.store import ChunkBatch, Store, codec
from cryostash.store.manifest import validate_relpath
from cryostash.transfer.baseline import KeptImage
from cryostash.transfer.chunking import ChunkParams, is_zero, map_file
from cryostash.transfer.progress import Progress
from cryostash.transfer.resync import Reference, Tally, rechunk
from cryostash.transfer.wholehash import State, WholeHash
from cryostash.transfer.workers import Shared, walk
from cryostash.types import FileEntry

#: Reserve chunks with the catalog in batches of at most this many distinct digests. The
#: first batch holds 4 and each next one twice as many (so uploads start at once), and a
#: batch also goes when the readers have nothing new for a moment.
BATCH = 64
#: Reserve callback: given ``{digest: plain size}``, record the references and return the
#: digests that the catalog did not know before (those are uploaded unless the store has them).
Reserve = Callable[[Mapping[str, int]], Set[str]]
#: A chunk's digest, or the hashing under way (readers cut while hashers hash).
Digest = str | Future[str]
#: What readers queue: (file index, digest, chunk, all zeros?); the chunk is None at the
#: end of a file.
_Item = tuple[int, Digest, memoryview | None, bool]


@dataclass(frozen=True)
class PackStats:
    """What :func:`pack` did. Plain sizes unless said otherwise.

    Attributes:
        bytes_scanned: size of all files. chunks_total: chunk references (a chunk used
            twice counts twice). chunks_unique: distinct chunks. chunks_zero: references
            to all-zero chunks. chunks_new: chunks stored by this call. chunks_present:
            chunks the catalog did not know but the store had. chunks_known: chunks the
            catalog knew (neither checked nor uploaded). bytes_new: plain size of the new
            chunks. bytes_stored: their encoded size (what the store grew by).
            bytes_uploaded: encoded bytes sent, failed attempts included. chunks_cached:
            objects copied into the local cache. bytes_hashed: plain bytes cut (FastCDC)
            and hashed (BLAKE3) as chunks (zero chunks are recognised by a memcmp and not
            hashed). bytes_hashed_whole: bytes hashed for the whole-file digests (a file
            of several chunks is hashed whole; against a kept image, only from its first
            change on). bytes_compared: bytes compared with a kept image (memcmp, failed
            comparisons included). chunks_reused: chunks named from the kept image
            without being cut or hashed.
    """

    files: int
    bytes_scanned: int
    chunks_total: int
    chunks_unique: int
    chunks_zero: int
    chunks_new: int
    chunks_present: int
    chunks_known: int
    bytes_new: int
    bytes_stored: int
    bytes_uploaded: int
    chunks_cached: int
    retries: int
    duration_s: float
    bytes_hashed: int = 0
    bytes_hashed_whole: int = 0
    bytes_compared: int = 0
    chunks_reused: int = 0

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready form."""
        return asdict(self)


@dataclass(frozen=True)
class PackResult:
    """The manifest's file entries (sorted by path), the stats, the chunk parameters and,
    if recorded, the whole-file hash states by path (:mod:`~cryostash.transfer.wholehash`)."""

    entries: tuple[FileEntry, ...]
    stats: PackStats
    params: ChunkParams
    states: Mapping[str, Sequence[State]] = field(default_factory=dict)


class _Stopped(Exception):
    """A reader noticed that the pipeline is stopping."""


class _Run:
    """State of one :func:`pack` call (see the module docstring for the threads)."""

    def __init__(
        self, store: Store, level: int | None, jobs: int, shared: Shared, record: bool
    ) -> None:
        self.store, self.level, self.shared, self.record = store, level, shared, record
        self.queue: queue.Queue[_Item] = queue.Queue(4 * jobs)
        self.hashers = ThreadPoolExecutor(max_workers=2)
        self.stop = threading.Event()
        self.errors: list[BaseException] = []
        self.inflight = threading.BoundedSemaphore(2 * jobs)
        self.counts = dict.fromkeys(
            ("new", "present", "bytes_new", "stored", "uploaded", "cached"), 0
        )
        self.tally = Tally()  #: what the readers compared with a kept image, summed
        self.hashed = 0  #: plain bytes the readers had hashed as chunks
        self.hashed_whole = 0  #: bytes hashed for whole-file digests
        self.states: dict[int, list[State]] = {}  #: whole-file hash states, by file index
        #: One durability barrier for all new chunks (see storage.store.ChunkBatch).
        self.batch: ChunkBatch = store.chunks.batch(jobs)

    def fail(self, exc: BaseException) -> None:
        with self.shared.lock:
            self.errors.append(exc)
        self.stop.set()

    def put(self, item: _Item) -> None:
        while not self.stop.is_set():
            try:
                self.queue.put(item, timeout=0.1)
                return
            except queue.Full:
                continue
        raise _Stopped

    def upload(self, digest: str, view: memoryview) -> None:
        """Store one chunk the catalog did not know (unless the store has it)."""
        shared = self.shared
        if self.batch.present(digest):
            with shared.lock:
                self.counts["present"] += 1
            return
        parts = self.store.chunks.encode(digest, view, self.level)  # sealed if encrypted
        size = codec.encoded_size(parts)
        wrote = self.batch.add(digest, parts)
        cached = wrote and self.store.chunks.cache_object(digest, parts)
        with shared.lock:
            if wrote:
                self.counts["new"] += 1
                self.counts["bytes_new"] += len(view)
                self.counts["stored"] += size
            else:
                self.counts["present"] += 1
            self.counts["cached"] += int(cached)


def _read(
    run: _Run,
    index: int,
    path: Path,
    params: ChunkParams,
    digests: list[str],
    sizes: list[int],
    kept: Reference | None,
) -> None:
    """Reader stage for one file: queue its chunks in order, then an end marker; put the
    whole file's digest in ``digests[index]`` and its size in ``sizes[index]``. Digests
    are the store's names (BLAKE3, keyed in an encrypted store). ``kept``: the same file
    in a kept image, whose chunks are reused where proven equal."""
    names = run.store.sealing
    try:
        view, size = map_file(path)
    except OSError as exc:
        raise StorageError(f"cannot read {path}: {exc}") from exc
    sizes[index] = size
    whole = None
    if size > params.min:  # may be several chunks: hashed whole, alongside
        whole = WholeHash(names, view, () if kept is None else kept.states, run.record)
        if kept is None:
            whole.start()
    proven = 0  # the first bytes, proven equal to the kept file's
    tally = Tally()
    hashed = count = 0
    digest: Digest = ""
    try:
        for piece in rechunk(view, kept, params, tally):
            if run.stop.is_set():
                raise _Stopped
            chunk = view[piece.offset : piece.offset + piece.length]
            zero = is_zero(chunk)
            if piece.source == piece.offset == proven:
                proven += piece.length
            elif whole is not None:
                whole.start(proven)  # may differ from here on
            if piece.digest is not None:
                digest = piece.digest
            else:
                hashed += 0 if zero else len(chunk)
                digest = (
                    names.zero_name(len(chunk))
                    if zero
                    else run.hashers.submit(names.chunk_name, chunk)
                )
            run.put((index, digest, chunk, zero))
            count += 1
    finally:
        if whole is not None:
            whole.join()
    if count == 1:
        digests[index] = digest if isinstance(digest, str) else digest.result()
    elif kept is not None and proven == size == kept.size:
        digests[index] = kept.digest  # every byte proven equal to the kept file's
        if whole is not None:
            whole.states = list(kept.states)  # and so are its hash states
    elif whole is None:
        digests[index] = names.chunk_name(b"")
    else:
        whole.start(proven)
        digests[index] = whole.result()
    with run.shared.lock:
        run.hashed += hashed
        run.hashed_whole += 0 if whole is None else whole.hashed
        run.tally.add(tally)
        if whole is not None and run.record:
            run.states[index] = whole.states
    run.put((index, "", None, False))


def pack(
    store: Store,
    image_dir: Path,
    *,
    reserve: Reserve | None = None,
    params: ChunkParams | None = None,
    level: int | None = codec.DEFAULT_LEVEL,
    jobs: int = 4,
    callback: Progress | None = None,
    baseline: KeptImage | None = None,
    record_states: bool = False,
) -> PackResult:
    """Chunk, hash, compress and store every regular file under ``image_dir``.

    Args:
        reserve: called from this thread only, with batches of distinct chunks; returns
            those the catalog did not know (see :data:`Reserve`). None: every chunk is
            checked against the store.
        params: FastCDC parameters (default: 1 MiB average).
        level: zstd level, or None to store chunks raw.
        jobs: upload threads (at least 1); readers use at most 2 threads.
        callback: fsspec-style progress over the bytes scanned.
        baseline: a kept image: its files' chunks are reused where their bytes are
            proven unchanged (see the module docstring), when it serves this store and
            these parameters (:meth:`~cryostash.transfer.baseline.KeptImage.serves`).
            The entries are the same as without it.
        record_states: keep the whole-file hash states of the files hashed whole
            (:attr:`PackResult.states`), for a later pack against this image.

    Every chunk stored is durable when this returns (one barrier, see the module
    docstring); a store that reads through a chunk cache also caches each.

    Returns:
        the file entries (sorted by path; empty folders are not recorded) and the stats.

    Raises:
        UsageError: ``jobs`` < 1, or a symbolic link, device, FIFO or socket in the tree.
        StorageError: a file could not be read, or the store failed (after retries).
        Whatever ``reserve`` raises (e.g. CatalogError).
    """
    from cryostash.errors import UsageError

    if jobs < 1:
        raise UsageError(f"jobs must be at least 1, not {jobs}")
    started = time.monotonic()
    params = params or ChunkParams()
    kept = baseline if baseline is not None and baseline.serves(store, params) else None
    files = walk(Path(image_dir))
    for rel, _, _ in files:
        validate_relpath(rel)
    sizes = [path.stat().st_size for _, path, _ in files]
    shared = Shared(callback)
    shared.set_size(sum(sizes))
    retries, failed = store.retries, store.bytes_failed
    run = _Run(store, level, jobs, shared, record_states)
    chunks: list[list[tuple[str, int]]] = [[] for _ in files]
    digests = [""] * len(files)
    seen: set[str] = set()
    pending: dict[str, memoryview] = {}
    zero_refs = known = 0
    uploads: list[Future[None]] = []
    order = sorted(range(len(files)), key=lambda i: -sizes[i])  # largest first
    readers = ThreadPoolExecutor(max_workers=max(1, min(2, jobs, len(files))))
    uploaders = ThreadPoolExecutor(max_workers=jobs)

    def watch(future: Future[Any]) -> None:
        exc = future.exception()
        if exc is not None and not isinstance(exc, _Stopped):
            run.fail(exc)

    def released(future: Future[None]) -> None:
        run.inflight.release()
        watch(future)

    batch_size = 4

    def flush() -> None:
        nonlocal known, batch_size
        if not pending:
            return
        batch_size = min(BATCH, 2 * batch_size)
        batch = {d: len(v) for d, v in pending.items()}
        fresh = set(batch) if reserve is None else set(reserve(batch))
        for digest, view in pending.items():
            if digest not in fresh:
                known += 1
                continue
            while not run.inflight.acquire(timeout=0.1):
                if run.stop.is_set():
                    return
            future = uploaders.submit(run.upload, digest, view)
            future.add_done_callback(released)
            uploads.append(future)
        pending.clear()

    try:
        for i in order:
            ref = None if kept is None else kept.reference(files[i][0])
            reader = readers.submit(_read, run, i, files[i][1], params, digests, sizes, ref)
            reader.add_done_callback(watch)
        ended = 0
        while ended < len(files) and not run.stop.is_set():
            try:
                index, pending_digest, view, zero = run.queue.get(
                    timeout=0.02 if pending else 0.2
                )
            except queue.Empty:
                flush()
                continue
            if view is None:
                ended += 1
                continue
            digest = pending_digest if isinstance(pending_digest, str) else pending_digest.result()
            chunks[index].append((digest, len(view)))
            shared.progress(len(view))
            zero_refs += zero
            if digest not in seen:
                seen.add(digest)
                pending[digest] = view
                if len(pending) >= batch_size:
                    flush()
        if not run.stop.is_set():
            flush()
        for future in uploads:
            if run.stop.is_set():
                break
            future.exception()
    except BaseException as exc:
        run.fail(exc)
        raise
    finally:
        readers.shutdown(wait=True, cancel_futures=True)
        run.hashers.shutdown(wait=True, cancel_futures=True)
        uploaders.shutdown(wait=True, cancel_futures=True)
        if run.stop.is_set():
            run.batch.discard()
    if run.errors:
        raise run.errors[0]
    run.batch.commit()  # on failure it removes what it did not rename
    store.chunks.trim_cache()
    entries = tuple(
        FileEntry(
            path=rel,
            mode=mode,
            size=sizes[i],
            blobs=tuple(d for d, _ in chunks[i]),
            digest=digests[i],
            chunk_sizes=tuple(n for _, n in chunks[i]),
        )
        for i, (rel, _, mode) in enumerate(files)
    )
    c = run.counts
    stats = PackStats(
        files=len(files),
        bytes_scanned=sum(sizes),
        chunks_total=sum(len(x) for x in chunks),
        chunks_unique=len(seen),
        chunks_zero=zero_refs,
        chunks_new=c["new"],
        chunks_present=c["present"],
        chunks_known=known,
        bytes_new=c["bytes_new"],
        bytes_stored=c["stored"],
        bytes_uploaded=c["stored"] + store.bytes_failed - failed,
        chunks_cached=c["cached"],
        retries=store.retries - retries,
        duration_s=time.monotonic() - started,
        bytes_hashed=run.hashed,
        bytes_hashed_whole=run.hashed_whole,
        bytes_compared=run.tally.compared,
        chunks_reused=run.tally.reused,
    )
    states = {files[i][0]: tuple(kept_states) for i, kept_states in run.states.items()}
    return PackResult(entries, stats, params, states)
