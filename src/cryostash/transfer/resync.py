"""Chunking a file against the chunks of an earlier version of it: unchanged chunks are
proven by comparing bytes (memcmp) instead of being cut and hashed again.

Live migration's final checkpoint uses it (:mod:`cryostash.transfer.baseline`): most
bytes of a process did not change since its last pre-copy checkpoint, whose files and
chunk list cryostash kept.

Contract of :func:`rechunk`: it yields exactly the chunks
:func:`~cryostash.transfer.chunking.cut` would cut from the new bytes (same offsets, same
lengths), each either *reused* (the digest of an earlier chunk whose bytes are proven
equal to it) or *fresh* (no digest: the caller hashes it). Without a reference every
chunk is fresh.

Why it is exact. The walk starts at offset 0, a chunk start of the full chunking, and
stays on them. At a chunk start ``q`` of the new bytes, an earlier chunk at ``c`` of
length ``L`` is the next chunk when the bytes that decided its cut
(:func:`~cryostash.transfer.chunking.deciding_bytes`: ``L``, or ``L + 1`` when FastCDC
read the first byte of the next chunk; and the distances to both ends must agree or
both be at least ``max``) are equal at ``c`` in the earlier bytes and at ``q`` in the
new: FastCDC then cuts the new bytes at ``q + L`` too, and, the chunk's bytes being
equal, its name is the earlier chunk's (names are a function of the bytes, under the
store's key: the same store named both). Equality is proven by a byte comparison, never
by a hash. Otherwise FastCDC cuts the chunk at ``q``
(:func:`~cryostash.transfer.chunking.cut_length`) and it is fresh. Either way the next
offset is again a chunk start of the full chunking.

Which earlier chunk is tried at ``q``: the one at the same shift as the last reused one
(``c - q``: 0 while nothing moved, the size of an insertion after one), then at most
:data:`TRIES` others whose first :data:`PREFIX` bytes equal the bytes at ``q``, nearest
that shift first. So after a rewrite, an insertion or a deletion the walk cuts fresh
chunks until FastCDC cuts where the earlier version was cut before the same bytes, and
reuses chunks from there. A wrong guess costs a comparison that fails, never a wrong
chunk. The property test (``tests/test_resync.py``) checks the result against
:func:`~cryostash.transfer.chunking.cut` on random files and random edits.
"""

from __future__ import annotations

import bisect
import itertools
import mmap
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

from cryostash.transfer.chunking import ChunkParams, cut_length, deciding_bytes
from cryostash.transfer.wholehash import State

#: Bytes of a chunk's start that index it for re-synchronisation (at most the smallest
#: chunk but the last: 64 bytes).
PREFIX = 32
#: Earlier chunks tried by their first bytes at one offset, besides the one at the shift.
TRIES = 4


@dataclass
class Tally:
    """What :func:`rechunk` did: ``compared`` bytes compared with the reference (failed
    comparisons included), ``reused`` chunks and ``reused_bytes`` their size."""

    compared: int = 0
    reused: int = 0
    reused_bytes: int = 0

    def add(self, other: Tally) -> None:
        """Add ``other``'s counts to these."""
        self.compared += other.compared
        self.reused += other.reused
        self.reused_bytes += other.reused_bytes


@dataclass(frozen=True)
class Piece:
    """One chunk of the new bytes: ``digest`` is the reused name (None: fresh, hash it)
    and ``source`` the offset of the earlier chunk it reuses (-1 when fresh)."""

    offset: int
    length: int
    digest: str | None = None
    source: int = -1


class Reference:
    """An earlier version of a file: its bytes (``data``: ``bytes`` or a read-only
    ``mmap``) and its chunks in order (``(length, digest)``), as cryostash chunked and
    named them, with ``digest``, the whole file's name, and ``states``, hash states of
    its bytes (:mod:`~cryostash.transfer.wholehash`), if kept.

    Raises:
        ValueError: the chunks do not cover ``data`` exactly.
    """

    def __init__(
        self,
        data: bytes | mmap.mmap,
        chunks: Sequence[tuple[int, str]],
        digest: str = "",
        states: Sequence[State] = (),
    ) -> None:
        self.data, self.size, self.digest, self.states = data, len(data), digest, states
        self.lengths = [length for length, _ in chunks]
        self.digests = [name for _, name in chunks]
        self.offsets = [0, *itertools.accumulate(self.lengths)]
        if self.offsets[-1] != self.size or any(n <= 0 for n in self.lengths):
            raise ValueError(f"{len(chunks)} chunks do not cover {self.size} bytes")
        self.offsets.pop()
        self.at = {offset: j for j, offset in enumerate(self.offsets)}
        self._by_prefix: dict[bytes, list[int]] | None = None

    def _index(self) -> dict[bytes, list[int]]:
        """Chunks by their first :data:`PREFIX` bytes (built on first use)."""
        if self._by_prefix is None:
            index: dict[bytes, list[int]] = {}
            for j, (offset, length) in enumerate(zip(self.offsets, self.lengths, strict=True)):
                if length >= PREFIX:
                    index.setdefault(bytes(self.data[offset : offset + PREFIX]), []).append(j)
            self._by_prefix = index
        return self._by_prefix

    def candidates(self, new: memoryview, q: int, shift: int) -> Iterator[int]:
        """Earlier chunks that may be the chunk at ``q`` of ``new``, likeliest first."""
        at = self.at.get(q + shift)
        if at is not None:
            yield at
        if len(new) - q < PREFIX:
            return
        hits = self._index().get(bytes(new[q : q + PREFIX]), [])
        target = q + shift
        offsets = self.offsets
        hi = bisect.bisect_left(hits, target, key=offsets.__getitem__)
        lo, tried = hi - 1, 0
        while tried < TRIES and (lo >= 0 or hi < len(hits)):
            if lo < 0 or (
                hi < len(hits) and offsets[hits[hi]] - target <= target - offsets[hits[lo]]
            ):
                j, hi = hits[hi], hi + 1
            else:
                j, lo = hits[lo], lo - 1
            if j != at:
                tried += 1
                yield j

    def proves(
        self, j: int, new: memoryview, q: int, params: ChunkParams, tally: Tally
    ) -> bool:
        """True if earlier chunk ``j`` is, byte for byte, the chunk cut at the chunk start
        ``q`` of ``new`` (see the module docstring)."""
        c, length = self.offsets[j], self.lengths[j]
        k = deciding_bytes(length, self.size - c, len(new) - q, params)
        if k is None:
            return False
        tally.compared += k
        return self.data.find(new[q : q + k], c, c + k) == c  # memcmp of k bytes


def rechunk(
    new: memoryview, ref: Reference | None, params: ChunkParams, tally: Tally
) -> Iterator[Piece]:
    """The chunks of the bytes ``new`` (a byte view), reused from ``ref`` where its bytes
    prove them (see the module docstring); every chunk fresh when ``ref`` is None."""
    size, q, shift = len(new), 0, 0
    while q < size:
        for j in ref.candidates(new, q, shift) if ref is not None else ():
            if ref is not None and ref.proves(j, new, q, params, tally):
                source, length = ref.offsets[j], ref.lengths[j]
                shift = source - q
                tally.reused += 1
                tally.reused_bytes += length
                yield Piece(q, length, ref.digests[j], source)
                break
        else:
            length = cut_length(new, q, params)
            yield Piece(q, length)
        q += length
