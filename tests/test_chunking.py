"""Content-defined chunking and the chunk encoding: properties (hypothesis) and edges."""

from __future__ import annotations

import os
import random
from pathlib import Path

import blake3
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from cryostash.config.transfer import parse_level
from cryostash.errors import IntegrityError, UsageError
from cryostash.store import codec
from cryostash.transfer.chunking import (
    ChunkParams,
    cut,
    is_zero,
    map_file,
    may_be_zero,
    zero_digest,
)
from cryostash.units import parse_size

SMALL = ChunkParams(256)  # min 64, max 1024: many chunks from little data


def reference(data: bytes, params: ChunkParams) -> list[tuple[int, int]]:
    """pyfastcdc's own chunks, without cryostash's zero-run shortcut."""
    from pyfastcdc import FastCDC

    chunker = FastCDC(params.avg, min_size=params.min, max_size=params.max)
    return [(c.offset, c.length) for c in chunker.cut_buf(data)] if data else []


def check_cover(data: bytes, params: ChunkParams) -> list[tuple[int, memoryview]]:
    chunks = list(cut(data, params))
    pos = 0
    for index, (offset, view) in enumerate(chunks):
        assert offset == pos
        assert len(view) <= params.max
        if index < len(chunks) - 1:
            assert len(view) >= params.min
        pos += len(view)
    assert pos == len(data)
    assert b"".join(bytes(v) for _, v in chunks) == data
    return chunks


# Content mixing random bytes and zero runs (the zero-run shortcut must not change cuts).
segments = st.lists(
    st.one_of(
        st.binary(min_size=0, max_size=3000),
        st.integers(min_value=1, max_value=5000).map(bytes),
    ),
    max_size=6,
).map(b"".join)


@settings(max_examples=150, deadline=None, derandomize=True)
@given(data=segments)
def test_chunks_cover_the_content_exactly_and_match_fastcdc(data: bytes) -> None:
    chunks = check_cover(data, SMALL)
    assert [(o, len(v)) for o, v in chunks] == reference(data, SMALL)


@settings(max_examples=60, deadline=None, derandomize=True)
@given(data=segments, prefix=st.binary(min_size=1, max_size=50))
def test_chunking_is_deterministic_and_resynchronises_after_an_insertion(
    data: bytes, prefix: bytes
) -> None:
    assert [bytes(v) for _, v in cut(data, SMALL)] == [bytes(v) for _, v in cut(data, SMALL)]
    before = {bytes(v) for _, v in cut(data, SMALL)}
    after = [bytes(v) for _, v in cut(prefix + data, SMALL)]
    # Content-defined: apart from the chunks around the change, the chunks are the same.
    if len(data) > 8 * SMALL.max:
        shared = sum(len(c) for c in after if c in before)
        assert shared >= len(data) - 4 * SMALL.max


@pytest.mark.parametrize(
    "size",
    [0, 1, 63, 64, 65, 255, 256, 257, 1023, 1024, 1025, 2048, 4096, 10_000],
)
@pytest.mark.parametrize("kind", ["random", "zeros"])
def test_boundary_sizes(size: int, kind: str) -> None:
    data = os.urandom(size) if kind == "random" else bytes(size)
    chunks = check_cover(data, SMALL)
    assert [(o, len(v)) for o, v in chunks] == reference(data, SMALL)
    if size == 0:
        assert chunks == []
    if 0 < size <= SMALL.min:
        assert len(chunks) == 1


def test_zero_runs_are_chunks_of_the_maximum_size_with_a_cached_digest() -> None:
    params = ChunkParams(1 << 16)
    data = bytes(5 * params.max + 123)
    chunks = check_cover(data, params)
    assert [len(v) for _, v in chunks[:5]] == [params.max] * 5
    assert all(is_zero(v) for _, v in chunks)
    assert zero_digest(params.max) == blake3.blake3(bytes(params.max)).hexdigest()
    assert not is_zero(memoryview(b"\0\0\1"))


@settings(max_examples=150, deadline=None, derandomize=True)
@given(data=segments)
def test_a_chunk_of_zeros_is_of_the_maximum_size_or_the_last(data: bytes) -> None:
    # What lets a restore look for zero chunks among those only (a hash of zeros per size).
    chunks = check_cover(data, SMALL)
    for index, (_, view) in enumerate(chunks):
        if is_zero(view):
            assert may_be_zero(len(view), last=index == len(chunks) - 1)


@pytest.mark.parametrize("avg", [1 << k for k in range(8, 23)])
def test_every_supported_chunker_cuts_zeros_only_at_the_maximum(avg: int) -> None:
    params = ChunkParams(avg)
    # Seeded: with os.urandom a random byte of 0 right after the zeros could, rarely, end a
    # shorter all-zero chunk (which a restore merely fetches instead of recognising).
    noise = random.Random(avg)
    data = noise.randbytes(params.max) + bytes(3 * params.max + params.min)
    data += noise.randbytes(params.max)
    sizes = {len(v) for _, v in cut(data, params) if is_zero(v)}
    assert sizes == {params.max} and may_be_zero(params.max, last=False)
    assert not may_be_zero(params.max - 1, last=False) and may_be_zero(3, last=True)


def test_map_file_gives_a_view_of_the_file(tmp_path: os.PathLike[str]) -> None:
    path = os.path.join(tmp_path, "f")
    with open(path, "wb") as fh:
        fh.write(b"abc" * 1000)
    view, size = map_file(path)
    assert size == 3000 and bytes(view[:6]) == b"abcabc"
    empty = os.path.join(tmp_path, "e")
    open(empty, "wb").close()
    view, size = map_file(empty)
    assert size == 0 and len(view) == 0


@pytest.mark.parametrize("avg", [0, 255, 1000, 3 << 20, 8 << 20])
def test_chunk_size_must_be_a_power_of_two_in_range(avg: int) -> None:
    with pytest.raises(UsageError, match="power of two"):
        ChunkParams(avg)


# -- encoding -----------------------------------------------------------------------


def decode_all(parts: tuple[bytes, codec.Buffer], max_size: int) -> bytes:
    return bytes(codec.decode(b"".join(bytes(p) for p in parts), max_size=max_size))


@settings(max_examples=100, deadline=None, derandomize=True)
@given(data=segments, level=st.sampled_from([None, -5, 1, 3, 19]))
def test_encoding_round_trips_and_is_tagged(data: bytes, level: int | None) -> None:
    parts = codec.encode(data, level)
    assert parts[0] in (b"\x00", b"\x01")
    if level is None:
        assert parts[0] == b"\x00"
    assert decode_all(parts, len(data)) == data


def test_compressible_chunks_are_compressed_and_random_ones_stored_raw() -> None:
    zeros = bytes(1 << 20)
    tag, payload = codec.encode(zeros, 3)
    assert tag == b"\x01" and len(payload) < 1000
    noise = os.urandom(1 << 20)
    tag, payload = codec.encode(noise, 3)
    assert tag == b"\x00" and bytes(payload) == noise


@pytest.mark.parametrize(
    ("obj", "message"),
    [
        (b"", "empty object"),
        (b"\x07abc", "unknown encoding tag 0x07"),
        (b"\x01not a frame", "bad zstd frame"),
        (b"\x00" + bytes(11), "more than 10"),
    ],
)
def test_bad_objects_are_corrupt(obj: bytes, message: str) -> None:
    with pytest.raises(IntegrityError, match=message):
        codec.decode(obj, max_size=10, what="blob X")


def test_a_frame_announcing_too_much_is_refused_before_decompressing() -> None:
    tag, payload = codec.encode(bytes(1 << 20), 3)
    with pytest.raises(IntegrityError, match="announces 1048576 bytes"):
        codec.decode(tag + bytes(payload), max_size=1000)
    truncated = tag + bytes(payload)[:-3]
    with pytest.raises(IntegrityError, match="corrupt"):
        codec.decode(truncated, max_size=1 << 20)


def test_settings_parsing() -> None:
    assert parse_size("1M") == 1 << 20
    assert parse_size("512k") == 512 << 10
    assert parse_size("2GiB") == 2 << 30
    assert parse_size("4096") == 4096
    assert parse_level("none") is None
    assert parse_level("19") == 19
    for bad in ("x", "-1k", ""):
        with pytest.raises(UsageError, match="invalid size"):
            parse_size(bad)
    for bad in ("23", "fast", "-8"):
        with pytest.raises(UsageError, match="invalid compression"):
            parse_level(bad)


def test_data_path_settings_come_from_flags_environment_and_defaults(tmp_path: Path) -> None:
    from cryostash.config import resolve_settings

    env = {"CRYOSTASH_CONFIG": os.devnull, "XDG_DATA_HOME": str(tmp_path)}
    default = resolve_settings({}, env).transfer
    assert default.chunk_size == 1 << 20 and default.compression == 3
    assert default.cache_dir is not None and default.cache_dir.name == "cache"
    assert default.cache_max_bytes == 10 << 30
    env.update(CRYOSTASH_CACHE="none", CRYOSTASH_COMPRESSION="none", CRYOSTASH_CHUNK_SIZE="256k")
    from_env = resolve_settings({}, env).transfer
    assert from_env.cache_dir is None and from_env.compression is None
    assert from_env.chunk_size == 256 << 10
    flags = {"cache": str(tmp_path / "c"), "compression": "19", "cache_size": "1G"}
    from_flags = resolve_settings(flags, env).transfer
    assert from_flags.cache_dir == tmp_path / "c" and from_flags.compression == 19
    assert from_flags.cache_max_bytes == 1 << 30
    with pytest.raises(UsageError, match="invalid compression"):
        resolve_settings({"compression": "max"}, env)
