"""Content-defined chunking (FastCDC, via ``pyfastcdc``) of the files of an image folder.

Contract:

- :class:`ChunkParams` fixes the chunker: ``avg`` (a power of two, default 1 MiB),
  ``min = avg // 4`` and ``max = avg * 4``. pyfastcdc's actual mean is about
  ``avg + min`` (1.25 MiB by default). A file no longer than ``min`` is one chunk; an
  empty file has no chunks.
- :func:`cut` yields ``(offset, view)`` for consecutive chunks of a buffer: the views
  cover the buffer exactly, in order, without gaps or overlaps, and every chunk but the
  last is at least ``min`` and at most ``max`` bytes long (the last one may be shorter).
  The boundaries depend only on the content and the parameters (same bytes, same
  chunks), so an insertion or a rewrite of a region moves only the chunks around it.
  Precisely (:func:`deciding_bytes`): the chunk cut at a chunk start is decided by at
  most one byte more than the chunk and by how far the buffer goes on (only when less
  than ``max``); :func:`cut_length` cuts one chunk, exactly as :func:`cut` does.
- :func:`map_file` maps a file read-only (no copy in RAM: chunks are views of the page
  cache); :func:`is_zero` and :func:`zero_digest` let callers skip hashing, compressing
  and writing runs of zero bytes (CRIU writes every zero page).
- A chunk of zeros is ``max`` bytes long (a power of two) or is the last chunk of its
  buffer, for every supported ``avg`` (FastCDC finds no cut point in zeros; checked by
  the tests): :func:`may_be_zero` lets a reader of a manifest compare only those chunks
  with :func:`zero_digest` instead of hashing zeros for every chunk size.

Small files are chunked per file (no packing of several small files into one chunk):
an image folder holds few small files and one or a few large page files.

pyfastcdc is imported on first use (start-up time of the CLI).
"""

from __future__ import annotations

import functools
import mmap
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cryostash.config.transfer import MAX_CHUNK_SIZE, MIN_CHUNK_SIZE
from cryostash.errors import UsageError

#: Default average chunk size (1 MiB).
DEFAULT_AVG = 1 << 20
#: Bounds pyfastcdc accepts for the average (256 B .. 4 MiB).
MIN_AVG = MIN_CHUNK_SIZE
MAX_AVG = MAX_CHUNK_SIZE
#: Largest chunk any supported parameters can produce (``MAX_AVG * 4``).
MAX_CHUNK = MAX_AVG * 4
_ZEROS = bytes(MAX_CHUNK)


@dataclass(frozen=True)
class ChunkParams:
    """FastCDC parameters: ``avg`` must be a power of two in [256 B, 4 MiB].

    Raises:
        UsageError: ``avg`` out of range or not a power of two.
    """

    avg: int = DEFAULT_AVG

    def __post_init__(self) -> None:
        avg = self.avg
        if not (MIN_AVG <= avg <= MAX_AVG) or avg & (avg - 1):
            raise UsageError(
                f"chunk size {avg} is not a power of two between {MIN_AVG} and {MAX_AVG} bytes"
            )

    @property
    def min(self) -> int:
        """Smallest chunk (except a file's last): ``avg // 4``, at least 64 bytes."""
        return max(64, self.avg // 4)

    @property
    def max(self) -> int:
        """Largest chunk: ``avg * 4``, at least 1 KiB."""
        return max(1024, self.avg * 4)

    def as_dict(self) -> dict[str, int]:
        """JSON-ready form (recorded in the stats)."""
        return {"avg": self.avg, "min": self.min, "max": self.max}


@functools.lru_cache(maxsize=8)
def _chunker(params: ChunkParams) -> Any:
    from pyfastcdc import FastCDC

    return FastCDC(params.avg, min_size=params.min, max_size=params.max)


@functools.lru_cache(maxsize=8)
def _zeros_cut_at_max(params: ChunkParams) -> bool:
    """True if FastCDC finds no cut point in ``max`` zero bytes (true of its gear table:
    checked, not assumed), so that a chunk starting on ``max`` zeros is exactly those."""
    return int(next(iter(_chunker(params).cut_buf(bytes(2 * params.max)))).length) == params.max


def cut(buf: Any, params: ChunkParams) -> Iterator[tuple[int, memoryview]]:
    """Yield ``(offset, view)`` for the content-defined chunks of ``buf`` (a buffer).

    Exactly FastCDC's chunks: a cut depends only on the bytes from the chunk's start, so
    where a chunk starts on ``max`` zero bytes (CRIU's zero pages) it is emitted after a
    memcmp instead of a scan. An empty buffer yields nothing. Safe from several threads
    (a FastCDC object is only read while cutting).
    """
    view = memoryview(buf).cast("B")
    size, pos = len(view), 0
    while pos < size:
        length = cut_length(view, pos, params)
        yield pos, view[pos : pos + length]
        pos += length


def cut_length(view: memoryview, pos: int, params: ChunkParams) -> int:
    """The length of the chunk :func:`cut` cuts at ``pos`` (< ``len(view)``) of the byte
    view ``view`` when a chunk starts there (see :func:`deciding_bytes` for what it reads)."""
    top = params.max
    if _zeros_cut_at_max(params) and len(view) - pos >= top and is_zero(view[pos : pos + top]):
        return top
    return int(next(iter(_chunker(params).cut_buf(view[pos:]))).length)


def deciding_bytes(length: int, left: int, other_left: int, params: ChunkParams) -> int | None:
    """What decided a chunk of ``length`` bytes that :func:`cut` cut with ``left`` bytes
    from its start to the end of its buffer: the number of bytes from its start that
    FastCDC read; or None when another buffer with ``other_left`` bytes from a chunk
    start could be cut differently even if it starts with those same bytes.

    FastCDC (pyfastcdc, both implementations) decides a cut from the bytes from the
    chunk's start and from ``min(max, left)``: a cut found by content at ``length``
    (< ``min(max, left)``) read the byte at ``length`` too (the first byte of the next
    chunk: ``length + 1`` bytes); a chunk cut at ``max`` or at the buffer's end read at
    most ``length`` bytes. So a chunk starting on the same ``deciding_bytes`` bytes in a
    buffer whose ``other_left`` is ``left``, or where both are at least ``max``, is cut
    at the same ``length`` (:mod:`cryostash.transfer.resync` relies on this; its property
    test checks it against :func:`cut`).
    """
    top = params.max
    if other_left != left and (left < top or other_left < top):
        return None
    return length if length in (top, left) else length + 1


def map_file(path: Path | str) -> tuple[memoryview, int]:
    """A read-only view of the whole file and its size; an empty file gives an empty view.

    The mapping lives as long as a view of it does.

    Raises:
        OSError: the file cannot be opened or mapped.
    """
    fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    try:
        size = os.fstat(fd).st_size
        if size == 0:
            return memoryview(b""), 0
        mapped = mmap.mmap(fd, size, access=mmap.ACCESS_READ)
    finally:
        os.close(fd)
    return memoryview(mapped), size


def is_zero(view: memoryview) -> bool:
    """True if every byte of ``view`` is zero (``len(view) <= MAX_CHUNK``); memcmp speed."""
    return len(view) <= MAX_CHUNK and _ZEROS.startswith(view)


def may_be_zero(size: int, last: bool) -> bool:
    """False when a chunk of ``size`` bytes, the last of its file or not, cannot be all
    zeros as :func:`cut` cuts (not ``max`` long, which is a power of two, nor the last).
    A chunk cut otherwise (another chunker) is merely not recognised as zeros."""
    return last or (size > 0 and size & (size - 1) == 0)


@functools.lru_cache(maxsize=64)
def zero_digest(size: int) -> str:
    """BLAKE3 hex digest of ``size`` zero bytes (cached per size)."""
    import blake3

    return str(blake3.blake3(_ZEROS[:size] if size <= MAX_CHUNK else bytes(size)).hexdigest())
