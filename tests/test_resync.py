"""Chunking against an earlier version (``transfer/resync.py``): exactly the chunks a full
chunking cuts, with the earlier names reused only where the bytes are equal.

Property (hypothesis): random files (random bytes, zero runs, repeated patterns), random
edits (rewrites, insertions, deletions, appends, truncations, the byte right after a
cut), then :func:`rechunk` against the original's chunks must give the offsets and
lengths of :func:`cut` on the edited file, and every reused name must be the name of the
edited chunk's own bytes. Small chunk parameters (min 64, max 1 KiB) give many chunks.
"""

from __future__ import annotations

import random

import blake3
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from cryostash.transfer.chunking import ChunkParams, cut, deciding_bytes
from cryostash.transfer.resync import PREFIX, Reference, Tally, rechunk

SMALL = ChunkParams(256)  # min 64, avg 256, max 1024


def name(data: bytes | memoryview) -> str:
    return str(blake3.blake3(data).hexdigest())


def chunked(data: bytes, params: ChunkParams = SMALL) -> Reference:
    """``data`` as a pack would have recorded it: its chunks and their names."""
    chunks = [(len(view), name(view)) for _, view in cut(data, params)]
    return Reference(data, chunks, name(data))


def check(old: bytes, new: bytes, params: ChunkParams = SMALL) -> Tally:
    """rechunk(new) against old's chunks is cut(new), names included."""
    tally = Tally()
    pieces = list(rechunk(memoryview(new), chunked(old, params), params, tally))
    assert [(p.offset, p.length) for p in pieces] == [
        (offset, len(view)) for offset, view in cut(new, params)
    ]
    for piece in pieces:
        chunk = new[piece.offset : piece.offset + piece.length]
        if piece.digest is not None:
            assert piece.digest == name(chunk)
            assert old[piece.source : piece.source + piece.length] == chunk
    assert tally.reused == sum(p.digest is not None for p in pieces)
    assert tally.reused_bytes == sum(p.length for p in pieces if p.digest is not None)
    return tally


#: Random bytes (from a drawn seed: hypothesis draws large binaries slowly and small).
noise = st.builds(
    lambda seed, size: random.Random(seed).randbytes(size),
    st.integers(0, 2**32),
    st.integers(1, 8000),
)
block = st.one_of(
    noise,
    noise,
    st.integers(min_value=1, max_value=5000).map(bytes),  # zero runs (CRIU's zero pages)
    st.tuples(st.binary(min_size=1, max_size=8), st.integers(1, 400)).map(lambda t: t[0] * t[1]),
)
files = st.lists(block, max_size=8).map(b"".join)


@st.composite
def edit(draw: st.DrawFn, data: bytes) -> bytes:
    """One edit of ``data``: rewrite, insert, delete, append, truncate, or flip the byte
    at a cut (the first byte of a chunk: FastCDC read it to cut the chunk before)."""
    size = len(data)
    kind = draw(st.sampled_from(["rewrite", "insert", "delete", "append", "truncate", "cut"]))
    at = draw(st.integers(0, size))
    if kind == "rewrite" and size:
        at = min(at, size - 1)
        span = draw(st.integers(1, min(size - at, 600)))
        return data[:at] + draw(st.binary(min_size=span, max_size=span)) + data[at + span :]
    if kind == "insert":
        return data[:at] + draw(st.one_of(st.binary(min_size=1, max_size=64), block)) + data[at:]
    if kind == "delete" and size:
        return data[:at] + data[at + draw(st.integers(1, 2500)) :]
    if kind == "append":
        return data + draw(block)
    if kind == "truncate":
        return data[:at]
    cuts = [offset for offset, _ in cut(data, SMALL)][1:]
    if not cuts:
        return data
    at = draw(st.sampled_from(cuts))
    return data[:at] + bytes([data[at] ^ draw(st.integers(1, 255))]) + data[at + 1 :]


@st.composite
def versions(draw: st.DrawFn) -> tuple[bytes, bytes]:
    old = draw(files)
    new = old
    for _ in range(draw(st.integers(0, 4))):
        new = draw(edit(new))
    return old, new


@settings(max_examples=400, deadline=None, derandomize=True)
@given(versions())
def test_rechunk_is_the_full_chunking_with_earlier_names(pair: tuple[bytes, bytes]) -> None:
    check(*pair)


@settings(max_examples=100, deadline=None, derandomize=True)
@given(files, files)
def test_unrelated_files_are_chunked_in_full(old: bytes, new: bytes) -> None:
    check(old, new)


def test_an_unchanged_file_is_compared_not_cut() -> None:
    data = bytes(range(256)) * 97 + b"tail" + bytes(3000)
    tally = check(data, data)
    assert tally.reused == len(list(cut(data, SMALL)))
    assert tally.reused_bytes == len(data)
    assert tally.compared <= len(data) + tally.reused  # each chunk plus its cut byte


def test_a_rewrite_costs_the_chunks_around_it_only() -> None:
    data = random.Random(7).randbytes(200_000)
    new = bytearray(data)
    new[100_000:100_008] = b"changed!"
    tally = check(data, bytes(new))
    fresh = len(data) - tally.reused_bytes
    assert 0 < fresh <= 3 * SMALL.max  # the chunk rewritten, and at most a few after it


def test_an_insertion_resynchronises_after_the_shift() -> None:
    rng = random.Random(11)
    data = rng.randbytes(200_000)
    new = data[:50_000] + rng.randbytes(5_000) + data[50_000:]
    tally = check(data, new)
    assert len(new) - tally.reused_bytes <= 5_000 + 3 * SMALL.max


def test_the_byte_after_a_chunk_decides_its_cut() -> None:
    """A chunk cut by content read the next chunk's first byte: with that byte changed,
    the chunk is not reused even though its own bytes are unchanged."""
    data = random.Random(3).randbytes(20_000)
    cuts = [(o, len(v)) for o, v in cut(data, SMALL)]
    offset, length = next((o, n) for o, n in cuts[:-1] if n < SMALL.max)
    assert deciding_bytes(length, len(data) - offset, len(data) - offset, SMALL) == length + 1
    for flip in range(1, 256):
        new = bytearray(data)
        new[offset + length] ^= flip
        check(data, bytes(new))


@pytest.mark.parametrize(
    ("length", "left", "other", "expected"),
    [
        (300, 5000, 5000, 301),  # cut by content: the next byte was read
        (300, 5000, 1500, 301),  # both go on for at least max
        (300, 5000, 900, None),  # the other ends within max: FastCDC may cut elsewhere
        (1024, 5000, 2000, 1024),  # cut at max: nothing more read
        (700, 700, 700, 700),  # the last chunk
        (700, 700, 900, None),
        (50, 50, 50, 50),  # shorter than min
    ],
)
def test_deciding_bytes(length: int, left: int, other: int, expected: int | None) -> None:
    assert deciding_bytes(length, left, other, SMALL) == expected


def test_a_reference_must_cover_its_bytes() -> None:
    with pytest.raises(ValueError, match="do not cover"):
        Reference(b"abc", [(2, "x")])
    assert Reference(b"", []).size == 0
    assert SMALL.min >= PREFIX
