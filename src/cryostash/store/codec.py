"""Encoding of stored chunk objects: one tag byte, then the payload (no I/O here).

```
0x00 <plain bytes>          "none": stored as is
0x01 <one zstd frame>       "zstd": the frame records the plain size (content size)
```

A chunk's name is the BLAKE3 of its *plain* bytes, so the same content has one name
whatever its encoding, and readers verify after decoding. :func:`encode` stores a chunk
raw when compressing does not pay: when a sample of it (a few slices spread over it)
does not shrink by a tenth, or when the compressed frame is not smaller than the plain
bytes. Random data thus costs one small trial, not a full compression.

:func:`decode` refuses an unknown tag, a truncated or garbled frame, and a frame that
announces more than ``max_size`` bytes (no decompression bombs), all as IntegrityError.

``zstandard`` is imported on first use.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from typing import Any

from cryostash.errors import IntegrityError
from cryostash.objects.backend import Buffer

TAG_NONE = 0x00
TAG_ZSTD = 0x01
_TAG_NONE_BYTES = bytes([TAG_NONE])
_TAG_ZSTD_BYTES = bytes([TAG_ZSTD])
#: Default zstd level.
DEFAULT_LEVEL = 3
#: Sampling: this many slices of this size decide whether a larger chunk is compressible.
_SAMPLES, _SAMPLE_LEN = 8, 4096
_local = threading.local()
#: Largest plain chunk accepted when decoding or in a manifest: the chunker's largest
#: maximum (``cryostash.transfer.chunking.MAX_CHUNK``, 16 MiB).
MAX_PLAIN = 16 << 20


def _compressor(level: int) -> Any:
    """A per-thread ZstdCompressor for ``level`` (compressors are not thread-safe)."""
    cache: dict[int, Any] | None = getattr(_local, "compressors", None)
    if cache is None:
        cache = _local.compressors = {}
    if level not in cache:
        import zstandard

        cache[level] = zstandard.ZstdCompressor(level=level, write_content_size=True)
    return cache[level]


def _sample(plain: memoryview) -> bytes:
    step = len(plain) // _SAMPLES
    return b"".join(plain[i * step : i * step + _SAMPLE_LEN] for i in range(_SAMPLES))


def encode(plain: Buffer, level: int | None) -> tuple[bytes, Buffer]:
    """``(tag, payload)`` of the stored object for ``plain`` (write both, in order).

    ``level`` None stores raw. The payload may be ``plain`` itself (no copy).
    """
    view = memoryview(plain).cast("B")
    if level is None or not len(view):
        return _TAG_NONE_BYTES, plain
    comp = _compressor(level)
    if len(view) > 4 * _SAMPLES * _SAMPLE_LEN:
        sample = _sample(view)
        if len(_compressor(1).compress(sample)) * 10 > len(sample) * 9:
            return _TAG_NONE_BYTES, plain
    packed = comp.compress(view)
    if len(packed) >= len(view):
        return _TAG_NONE_BYTES, plain
    return _TAG_ZSTD_BYTES, packed


def encoded_size(parts: Sequence[Buffer]) -> int:
    """Total length of the parts of an encoded object."""
    return sum(memoryview(p).nbytes for p in parts)


def decode(data: Buffer, *, max_size: int, what: str = "object") -> bytes | memoryview:
    """The plain bytes of a stored object (a view of ``data`` for a raw one).

    Args:
        max_size: the largest plain size accepted.
        what: how to name the object in messages (``chunk DIGEST of file F``).

    Raises:
        IntegrityError: ``WHAT is corrupt: REASON`` (empty, unknown tag, bad frame,
            too large).
    """
    view = memoryview(data).cast("B")
    if not len(view):
        raise IntegrityError(f"{what} is corrupt: empty object (no encoding tag)")
    tag = view[0]
    if tag == TAG_NONE:
        if len(view) - 1 > max_size:
            raise IntegrityError(f"{what} is corrupt: {len(view) - 1} bytes, more than {max_size}")
        return view[1:]
    if tag != TAG_ZSTD:
        raise IntegrityError(f"{what} is corrupt: unknown encoding tag 0x{tag:02x}")
    import zstandard

    payload = view[1:]
    try:
        announced = zstandard.frame_content_size(payload)
        if announced < 0 or announced > max_size:
            raise IntegrityError(
                f"{what} is corrupt: zstd frame announces {announced} bytes (limit {max_size})"
            )
        out: bytes = zstandard.ZstdDecompressor().decompress(payload, max_output_size=max_size)
    except zstandard.ZstdError as exc:
        raise IntegrityError(f"{what} is corrupt: bad zstd frame ({exc})") from exc
    return out




def verified(
    data: Buffer,
    digest: str,
    size: int | None = None,
    *,
    what: str | None = None,
    name: Callable[[Buffer], str] | None = None,
) -> bytes | memoryview:
    """Decode the stored object ``data`` of chunk ``digest`` and check it: the plain bytes
    have the plain ``size`` the manifest records (when given) and BLAKE3 to ``digest``
    (``name``: how chunks are named, when not plain BLAKE3: an encrypted store's keyed one).

    Memory: nothing larger than ``min(size, MAX_PLAIN)`` plain bytes is ever allocated;
    a ``size`` beyond :data:`MAX_PLAIN` (no chunker makes such a chunk) is refused before
    any decoding, and a zstd frame is refused when the size it announces is larger.

    Raises:
        IntegrityError: ``blob DIGEST[ of file F] is corrupt: ...`` (bad encoding, wrong
            size, wrong BLAKE3).
    """
    import blake3

    label = what or f"blob {digest}"
    if size is not None and not 0 < size <= MAX_PLAIN:
        raise IntegrityError(
            f"{label} is corrupt: its manifest gives it {size} bytes, outside 1..{MAX_PLAIN}"
        )
    plain = decode(data, max_size=MAX_PLAIN if size is None else size, what=label)
    if size is not None and len(plain) != size:
        raise IntegrityError(f"{label} is corrupt: {len(plain)} bytes, expected {size}")
    got = blake3.blake3(plain).hexdigest() if name is None else name(plain)
    if got != digest:
        raise IntegrityError(f"{label} is corrupt: expected BLAKE3 {digest}, got {got}")
    return plain
