"""Settings of the data path: chunk size, compression, local chunk cache (a leaf module).

| flag | environment | config key | default |
|---|---|---|---|
| ``--chunk-size SIZE`` | ``CRYOSTASH_CHUNK_SIZE`` | ``chunk_size`` | ``1M`` (FastCDC average) |
| ``--compression LEVEL|none`` | ``CRYOSTASH_COMPRESSION`` | ``compression`` | ``3`` (zstd) |
| ``--cache DIR|none`` | ``CRYOSTASH_CACHE`` | ``cache`` | ``cache/`` beside the SQLite catalog |
| ``--cache-size SIZE`` | ``CRYOSTASH_CACHE_SIZE`` | ``cache_size`` | ``10G`` |

Sizes take binary units (``512k``, ``1M``, ``10G``, ``1GiB``) or plain bytes
(:func:`cryostash.units.parse_size`).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from cryostash.errors import UsageError
from cryostash.units import parse_size

#: Config keys and environment variable suffixes (``CRYOSTASH_<KEY>``) of these settings.
KEYS = ("cache", "cache_size", "compression", "chunk_size")
DEFAULT_CHUNK_SIZE = 1 << 20
#: The average chunk sizes the chunker takes (powers of two between them).
MIN_CHUNK_SIZE, MAX_CHUNK_SIZE = 256, 4 << 20
DEFAULT_LEVEL = 3
DEFAULT_CACHE_BYTES = 10 << 30
MIN_LEVEL, MAX_LEVEL = -7, 22
_OFF = frozenset({"none", "off", "no", "false"})


@dataclass(frozen=True)
class TransferSettings:
    """Resolved data-path settings.

    Attributes:
        chunk_size: FastCDC average chunk size in bytes (a power of two, 256 B..4 MiB;
            checked when a create uses it).
        compression: zstd level, or None to store chunks raw.
        cache_dir: the local chunk cache folder, or None for no cache.
        cache_max_bytes: the cache is trimmed to this size after each transfer.
    """

    chunk_size: int = DEFAULT_CHUNK_SIZE
    compression: int | None = DEFAULT_LEVEL
    cache_dir: Path | None = None
    cache_max_bytes: int = DEFAULT_CACHE_BYTES


def parse_level(text: str) -> int | None:
    """``none``/``off`` -> None (chunks stored raw); an integer in [-7, 22] -> that zstd
    level (0 is zstd's own default, 3).

    Raises:
        UsageError: anything else.
    """
    if text.strip().lower() in _OFF:
        return None
    try:
        level = int(text)
    except ValueError:
        level = MAX_LEVEL + 1
    if not MIN_LEVEL <= level <= MAX_LEVEL:
        raise UsageError(
            f"invalid compression {text!r}: expected a zstd level ({MIN_LEVEL}..{MAX_LEVEL}) "
            "or none"
        )
    return level


def _chunk_size(text: str) -> int:
    size = parse_size(text, "chunk size", maximum=MAX_CHUNK_SIZE)
    if size < MIN_CHUNK_SIZE or size & (size - 1):
        raise UsageError(
            f"invalid chunk size {text!r}: expected a power of two from {MIN_CHUNK_SIZE} "
            f"to {MAX_CHUNK_SIZE} bytes (256, 64k, 1M, 4M)"
        )
    return size


def resolve(pick: Callable[[str], str | None], state_dir: Path) -> TransferSettings:
    """Build the settings from ``pick(key)`` (flag, else environment, else config file,
    else None); the default cache is ``state_dir/cache`` (the settings pass the SQLite
    catalog's folder, ``DATA`` for the default catalog, else the data folder).

    Raises:
        UsageError: a malformed size or level.
    """
    chunk = pick("chunk_size")
    level = pick("compression")
    cache = pick("cache")
    cache_size = pick("cache_size")
    cache_dir: Path | None = state_dir / "cache"
    if cache is not None:
        cache_dir = None if cache.strip().lower() in _OFF else Path(cache)
    return TransferSettings(
        chunk_size=DEFAULT_CHUNK_SIZE if chunk is None else _chunk_size(chunk),
        compression=DEFAULT_LEVEL if level is None else parse_level(level),
        cache_dir=cache_dir,
        cache_max_bytes=(
            DEFAULT_CACHE_BYTES if cache_size is None else parse_size(cache_size, "cache size")
        ),
    )
