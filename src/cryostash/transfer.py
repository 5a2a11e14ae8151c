"""Scratch <-> store: hash an image directory, upload its blobs, fetch them back verified.

- :func:`scan_tree` hashes every file of an image directory (BLAKE3) into
  :class:`~cryostash.types.FileEntry` records (one blob per file for now).
- :func:`upload` stores the blobs the store lacks, in parallel, with bounded retries.
- :func:`download` rebuilds the files in a folder, hashing while streaming, and
  verifies every blob and every file: wrong bytes never appear under a final name.

Progress callbacks follow fsspec (``set_size(total)``, ``relative_update(n)``):
``fsspec.callbacks.Callback`` and its tqdm adapter fit. They are called from worker
threads, one call at a time (the calls are serialised here).
"""

from __future__ import annotations

import os
import secrets
import stat
import threading
import time
from collections.abc import Callable, Container, Iterable, Sequence
from concurrent.futures import FIRST_EXCEPTION, ThreadPoolExecutor, wait
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, TypeVar

import blake3

from cryostash.errors import CheckpointNotFound, IntegrityError, StorageError, UsageError
from cryostash.storage import BlobUpload, Progress, Store
from cryostash.storage.manifest import validate_relpath
from cryostash.types import FileEntry

#: Read size for hashing and streaming.
BLOCK = 1 << 20
#: Attempts per blob (upload) or file (download) when the store fails transiently.
ATTEMPTS = 3
#: First retry delay in seconds; doubled at each further attempt.
BACKOFF_S = 0.25
#: Blobs larger than this are uploaded in parts of this size where the store supports
#: multipart uploads (S3); also the memory one upload thread holds at most.
PART_SIZE = 16 << 20
#: S3's smallest part (every part but the last).
MIN_PART_SIZE = 5 << 20
#: S3's largest number of parts in one upload.
MAX_PARTS = 10_000

T = TypeVar("T")
Skip = Callable[[str], bool] | Container[str]


@dataclass(frozen=True)
class UploadStats:
    """What :func:`upload` did. Byte counts are blob sizes; ``retries`` counts repeated attempts."""

    files: int
    blobs: int
    blobs_uploaded: int
    blobs_skipped: int
    bytes_uploaded: int
    bytes_skipped: int
    retries: int
    duration_s: float

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready form (for manifest and catalog stats)."""
        return asdict(self)


@dataclass(frozen=True)
class DownloadStats:
    """What :func:`download` did."""

    files: int
    blobs_downloaded: int
    bytes_downloaded: int
    retries: int
    duration_s: float

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready form."""
        return asdict(self)


class _SharedProgress:
    """Serialises progress calls from worker threads onto the caller's callback."""

    def __init__(self, callback: Progress | None) -> None:
        self._callback = callback
        self._lock = threading.Lock()
        self.retries = 0

    def set_size(self, size: int) -> None:
        if self._callback is not None:
            with self._lock:
                self._callback.set_size(size)

    def update(self, inc: int) -> None:
        if self._callback is not None and inc:
            with self._lock:
                self._callback.relative_update(inc)

    def count_retry(self) -> None:
        with self._lock:
            self.retries += 1


class _Relay:
    """Per-attempt progress: forwards to the shared callback, remembers what it sent so
    that a failed attempt can be taken back. Ignores ``set_size`` (the total is global)."""

    def __init__(self, shared: _SharedProgress) -> None:
        self._shared = shared
        self.sent = 0

    def set_size(self, size: int | None) -> None:
        del size

    def relative_update(self, inc: int = 1) -> None:
        self.sent += inc
        self._shared.update(inc)

    def take_back(self) -> None:
        self._shared.update(-self.sent)
        self.sent = 0


def _retry(fn: Callable[[_Relay], T], shared: _SharedProgress, attempts: int, backoff: float) -> T:
    """Call ``fn`` until it succeeds, retrying only StorageError(transient=True)."""
    for attempt in range(1, attempts + 1):
        relay = _Relay(shared)
        try:
            return fn(relay)
        except StorageError as exc:
            relay.take_back()
            if not exc.transient or attempt == attempts:
                raise
            shared.count_retry()
            time.sleep(backoff * (2 ** (attempt - 1)))
    raise AssertionError("unreachable")  # pragma: no cover


def _run_parallel(fn: Callable[[T], Any], items: Sequence[T], jobs: int) -> None:
    """Run ``fn`` on every item with ``jobs`` threads; on the first failure, cancel what
    has not started, wait for what has, and raise that failure."""
    if jobs < 1:
        raise UsageError(f"jobs must be at least 1, not {jobs}")
    if not items:
        return
    failed = threading.Event()

    def guarded(item: T) -> None:
        if failed.is_set():  # a sibling failed: do not start new work
            return
        try:
            fn(item)
        except BaseException:
            failed.set()
            raise

    pool = ThreadPoolExecutor(max_workers=min(jobs, len(items)))
    try:
        futures = [pool.submit(guarded, item) for item in items]
        wait(futures, return_when=FIRST_EXCEPTION)
    finally:  # on failure or Ctrl-C: drop what has not started, wait for what has
        pool.shutdown(wait=True, cancel_futures=True)
    for future in futures:
        if not future.cancelled():
            exc = future.exception()
            if exc is not None:
                raise exc


# -- scan ------------------------------------------------------------------------------


def hash_file(path: Path) -> tuple[str, int]:
    """BLAKE3 hex digest and size of the file at ``path``, read in 1 MiB blocks."""
    hasher = blake3.blake3()
    size = 0
    buf = bytearray(BLOCK)
    view = memoryview(buf)
    with open(path, "rb", buffering=0) as fh:
        while True:
            n = fh.readinto(view)
            if not n:
                break
            hasher.update(view[:n])
            size += n
    return str(hasher.hexdigest()), size


def _walk(image_dir: Path) -> list[tuple[str, Path, int]]:
    """``(relative path, absolute path, mode)`` of every regular file under ``image_dir``."""
    found: list[tuple[str, Path, int]] = []
    stack = [(image_dir, "")]
    while stack:
        folder, prefix = stack.pop()
        with os.scandir(folder) as it:
            for entry in it:
                rel = f"{prefix}{entry.name}"
                st = entry.stat(follow_symlinks=False)
                if stat.S_ISDIR(st.st_mode):
                    stack.append((Path(entry.path), rel + "/"))
                elif stat.S_ISREG(st.st_mode):
                    found.append((rel, Path(entry.path), stat.S_IMODE(st.st_mode)))
                elif stat.S_ISLNK(st.st_mode):
                    raise UsageError(
                        f"{entry.path} is a symbolic link: a checkpoint image may hold only "
                        "regular files and folders"
                    )
                else:
                    raise UsageError(
                        f"{entry.path} is not a regular file (device, FIFO or socket): a "
                        "checkpoint image may hold only regular files and folders"
                    )
    return found


def scan_tree(image_dir: Path, jobs: int = 4) -> list[FileEntry]:
    """Hash every regular file under ``image_dir`` into FileEntry records, sorted by path.

    One blob per file: ``blobs == (digest,)`` for a non-empty file, ``()`` for an empty
    one. ``mode`` is ``st_mode & 0o7777``. Empty folders are not recorded. Files are
    hashed in parallel by ``jobs`` threads.

    Raises:
        UsageError: a symbolic link, device, FIFO or socket is in the tree (named).
        StorageError: a file could not be read.
    """
    image_dir = Path(image_dir)
    try:
        files = _walk(image_dir)
    except OSError as exc:
        raise StorageError(f"cannot scan {image_dir}: {exc}") from exc
    entries: dict[str, FileEntry] = {}
    lock = threading.Lock()

    def one(item: tuple[str, Path, int]) -> None:
        rel, path, mode = item
        try:
            digest, size = hash_file(path)
        except OSError as exc:
            raise StorageError(f"cannot read {path}: {exc}") from exc
        entry = FileEntry(
            path=validate_relpath(rel),
            mode=mode,
            size=size,
            blobs=(digest,) if size else (),
            digest=digest,
        )
        with lock:
            entries[rel] = entry

    _run_parallel(one, files, jobs)
    return [entries[rel] for rel in sorted(entries)]


# -- upload ----------------------------------------------------------------------------


def _skip_predicate(skip: Skip | None) -> Callable[[str], bool]:
    if skip is None:
        return lambda digest: False
    if callable(skip):
        return skip
    container = skip
    return lambda digest: digest in container


@dataclass
class _Parts:
    """One blob uploaded in parts by several workers: who decides, what is left."""

    lock: threading.Lock
    count: int
    remaining: int
    decided: bool = False
    skipped: bool = False
    upload: BlobUpload | None = None
    completed: bool = False


def part_size_for(size: int, part_size: int) -> int:
    """The part size for a blob of ``size`` bytes: ``part_size``, raised if needed so
    that no blob needs more than :data:`MAX_PARTS` parts."""
    return max(part_size, -(-size // MAX_PARTS))


def upload(
    store: Store,
    image_dir: Path,
    entries: Iterable[FileEntry],
    *,
    jobs: int = 4,
    skip: Skip | None = None,
    callback: Progress | None = None,
    attempts: int = ATTEMPTS,
    backoff: float = BACKOFF_S,
    part_size: int = PART_SIZE,
) -> UploadStats:
    """Upload the blobs of ``entries`` (files under ``image_dir``) that the store lacks.

    A blob is skipped without asking the store when ``skip`` says so (a predicate or a
    set of digests known to be stored), else when ``store.has_blob`` is true. Each
    distinct blob is uploaded once. ``jobs`` threads share the work: whole blobs, and
    the parts of blobs larger than ``part_size`` when the store supports multipart
    uploads (S3), so that one large file is uploaded by every thread at once. Memory is
    bounded by about ``jobs * part_size``: a part is read from disk when it is sent.
    A transient StorageError is retried (``attempts`` in all, exponential ``backoff``),
    per blob or per part. Idempotent: running it again uploads nothing. Blobs already
    uploaded stay if a later one fails (they are content-addressed; gc removes
    unreferenced ones); multipart uploads not completed are aborted, so that no part
    is left behind.

    Raises:
        UsageError: an entry is not one blob per file (chunked entries come later), or
            ``part_size`` is below S3's 5 MiB minimum.
        StorageError: an upload failed (after retries); the first failure is raised.
    """
    started = time.monotonic()
    if part_size < MIN_PART_SIZE:
        raise UsageError(f"part size must be at least {MIN_PART_SIZE} bytes, not {part_size}")
    entries = list(entries)
    sources: dict[str, tuple[Path, int]] = {}
    for entry in entries:
        if not entry.blobs:
            continue
        if entry.blobs != (entry.digest,):
            raise UsageError(f"file {entry.path}: only one blob per file can be uploaded")
        sources.setdefault(
            entry.digest, (Path(image_dir) / validate_relpath(entry.path), entry.size)
        )
    is_skipped = _skip_predicate(skip)
    shared = _SharedProgress(callback)
    shared.set_size(sum(size for _, size in sources.values()))
    counts = {"uploaded": 0, "skipped": 0, "bytes_uploaded": 0, "bytes_skipped": 0}
    lock = threading.Lock()
    multipart: dict[str, _Parts] = {}
    items: list[tuple[str, int | None]] = []  # (digest, part index or None for the whole)
    # Largest first: the parts of big blobs keep every thread busy while small ones fill in.
    for digest in sorted(sources, key=lambda d: (-sources[d][1], d)):
        size = sources[digest][1]
        if store.supports_multipart and size > part_size:
            count = -(-size // part_size_for(size, part_size))
            multipart[digest] = _Parts(threading.Lock(), count, count)
            items.extend((digest, i) for i in range(count))
        else:
            items.append((digest, None))

    def tally(digest: str, uploaded: bool) -> None:
        size = sources[digest][1]
        if not uploaded:
            shared.update(size)
        with lock:
            key = "uploaded" if uploaded else "skipped"
            counts[key] += 1
            counts[f"bytes_{key}"] += size

    def whole(digest: str) -> None:
        path = sources[digest][0]

        def attempt(relay: _Relay) -> bool:
            if store.has_blob(digest):
                return False
            store.put_blob(digest, path, callback=relay)
            return True

        tally(digest, not is_skipped(digest) and _retry(attempt, shared, attempts, backoff))

    def part(digest: str, index: int) -> None:
        state = multipart[digest]
        path, size = sources[digest]
        with state.lock:  # the first part to run decides: skip, or start the upload
            if not state.decided:
                state.decided = True
                if is_skipped(digest) or _retry(
                    lambda _: store.has_blob(digest), shared, attempts, backoff
                ):
                    state.skipped = True
                    tally(digest, False)
                else:
                    state.upload = _retry(
                        lambda _: store.begin_blob_upload(digest), shared, attempts, backoff
                    )
            upload = state.upload
        if state.skipped or upload is None:  # skipped, or starting failed (already raised)
            return
        step = part_size_for(size, part_size)
        offset = index * step
        length = min(step, size - offset)

        def send(relay: _Relay) -> None:
            try:
                with open(path, "rb", buffering=0) as fh:
                    data = os.pread(fh.fileno(), length, offset)
            except OSError as exc:
                raise StorageError(f"cannot read {path}: {exc}") from exc
            if len(data) != length:
                raise StorageError(f"{path} changed while it was uploaded (short read)")
            upload.put_part(index + 1, data)
            relay.relative_update(length)

        _retry(send, shared, attempts, backoff)
        with state.lock:
            state.remaining -= 1
            last = state.remaining == 0
        if last:

            def finish(_: _Relay) -> None:
                try:
                    upload.complete()
                except StorageError:
                    if not store.has_blob(digest):  # a lost reply to a completed upload
                        raise

            _retry(finish, shared, attempts, backoff)
            state.completed = True
            tally(digest, True)

    def one(item: tuple[str, int | None]) -> None:
        digest, index = item
        if index is None:
            whole(digest)
        else:
            part(digest, index)

    try:
        _run_parallel(one, items, jobs)
    except BaseException:
        for state in multipart.values():  # every worker has stopped: nothing races this
            if state.upload is not None and not state.completed:
                state.upload.abort()
        raise
    return UploadStats(
        files=len(entries),
        blobs=len(sources),
        blobs_uploaded=counts["uploaded"],
        blobs_skipped=counts["skipped"],
        bytes_uploaded=counts["bytes_uploaded"],
        bytes_skipped=counts["bytes_skipped"],
        retries=shared.retries,
        duration_s=time.monotonic() - started,
    )


# -- download --------------------------------------------------------------------------


def _fetch_into(store: Store, entry: FileEntry, tmp: Path, relay: _Relay) -> int:
    """Stream the blobs of ``entry`` into the new file ``tmp``, verifying each blob and the
    whole file. Returns the number of blobs read."""
    whole = blake3.blake3()
    size = 0
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
    with os.fdopen(fd, "wb") as fh:
        for digest in entry.blobs:
            part = blake3.blake3()
            try:
                for chunk in store.iter_blob(digest, BLOCK):
                    size += len(chunk)
                    if size > entry.size:
                        raise IntegrityError(
                            f"blob {digest} of file {entry.path} is corrupt: file longer "
                            f"than the {entry.size} bytes recorded"
                        )
                    part.update(chunk)
                    whole.update(chunk)
                    fh.write(chunk)
                    relay.relative_update(len(chunk))
            except CheckpointNotFound as exc:
                raise IntegrityError(
                    f"blob {digest} of file {entry.path} is missing from store {store.url}"
                ) from exc
            got = part.hexdigest()
            if got != digest:
                raise IntegrityError(
                    f"blob {digest} of file {entry.path} is corrupt: expected BLAKE3 {digest}, "
                    f"got {got}"
                )
    if size != entry.size:
        raise IntegrityError(
            f"file {entry.path} is corrupt: expected {entry.size} bytes, got {size}"
        )
    got = whole.hexdigest()
    if got != entry.digest:
        raise IntegrityError(
            f"file {entry.path} is corrupt: expected BLAKE3 {entry.digest}, got {got}"
        )
    return len(entry.blobs)


def download(
    store: Store,
    entries: Iterable[FileEntry],
    dest_dir: Path,
    *,
    jobs: int = 4,
    callback: Progress | None = None,
    attempts: int = ATTEMPTS,
    backoff: float = BACKOFF_S,
) -> DownloadStats:
    """Rebuild the files of ``entries`` under ``dest_dir``, verified.

    Each file is streamed from its blobs into a hidden temporary name, hashed on the
    way; every blob digest, the file size and the file digest are checked before the
    file is renamed to its final name and given ``mode & 0o777`` (set-id and sticky bits
    are dropped). Folders are created as needed. Files are fetched in parallel; a
    transient StorageError restarts that file (``attempts`` in all). ``dest_dir``
    should be a fresh private folder: on error the caller removes it.

    Raises:
        IntegrityError: ``blob X of file Y is corrupt: expected ..., got ...``, a blob
            missing from the store (naming file and blob), or a wrong file size/digest.
        StorageError: the store failed (after retries).
    """
    started = time.monotonic()
    dest = Path(dest_dir)
    entries = list(entries)
    shared = _SharedProgress(callback)
    shared.set_size(sum(e.size for e in entries))
    totals = {"blobs": 0, "bytes": 0}
    lock = threading.Lock()
    dest.mkdir(parents=True, exist_ok=True)

    def one(entry: FileEntry) -> None:
        try:
            final = dest / validate_relpath(entry.path)
        except ValueError as exc:
            raise IntegrityError(f"unsafe file path in checkpoint: {exc}") from exc
        final.parent.mkdir(parents=True, exist_ok=True)

        def attempt(relay: _Relay) -> int:
            tmp = final.parent / f".{final.name}.{secrets.token_hex(6)}.part"
            try:
                blobs = _fetch_into(store, entry, tmp, relay)
                os.chmod(tmp, entry.mode & 0o777)
                os.replace(tmp, final)
            except BaseException:
                tmp.unlink(missing_ok=True)
                raise
            return blobs

        blobs = _retry(attempt, shared, attempts, backoff)
        with lock:
            totals["blobs"] += blobs
            totals["bytes"] += entry.size

    _run_parallel(one, entries, jobs)
    return DownloadStats(
        files=len(entries),
        blobs_downloaded=totals["blobs"],
        bytes_downloaded=totals["bytes"],
        retries=shared.retries,
        duration_s=time.monotonic() - started,
    )
