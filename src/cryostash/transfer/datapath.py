"""The manager's data path: settings -> :mod:`cryostash.transfer`, and the stats it records.

- :func:`pack_image` / :func:`unpack_image` run the pipeline with the chunk size,
  compression and cache of the settings, on ``jobs`` threads (twice as many for a store
  that is not on the local disk: requests mostly wait on the network). The cache serves
  stores that are not on the local disk (a local store's objects are already local:
  caching them would only double the disk used); a create into such a store fills it
  too, so that restoring on the same host downloads nothing.
- :func:`prefetch_image` fills the cache with a checkpoint's chunks ahead of a restore
  (``cryostash prefetch``), on the same threads, and returns its stats.
- :func:`create_stats` / :func:`restore_stats` build the JSON stats recorded in the
  catalog (a checkpoint's ``stats`` column; a restore's event ``detail``) and the
  manifest, shown by ``inspect`` and ``--json`` and printed by ``--print-stats``.

Stats of a create (times in seconds, sizes in bytes): ``frozen_s`` (how long the process
was frozen, CRIU's ``frozen_time``; null when the engine does not say), ``dump_s``,
``upload_s`` (chunk, hash, compress, store), ``total_s``, ``files``, ``bytes_scanned``
(image size), ``bytes_new`` (plain size of the chunks the store lacked),
``bytes_uploaded`` (encoded bytes sent), ``bytes_stored`` (encoded size of the new
chunks: what the store grew by), ``chunks_total``, ``chunks_unique``, ``chunks_new``,
``chunks_zero``, ``chunks_known``, ``chunks_present``, ``retries``, ``chunking``,
``compression``, and the engine's own under ``engine``; ``bytes_hashed`` (plain bytes cut
and hashed as chunks), ``bytes_hashed_whole`` (hashed for the whole-file digests),
``bytes_compared`` (compared with a kept image: live migration's baseline,
:mod:`cryostash.transfer.baseline`) and ``chunks_reused`` (named from it without being
cut or hashed).

Stats of a restore: ``download_s`` (fetch, verify, write), ``restore_s`` (the engine),
``total_s``, ``bytes_restored``, ``bytes_downloaded`` (encoded, from the store),
``bytes_from_cache`` (encoded, from the local cache), ``chunks_total``,
``chunks_downloaded``, ``chunks_from_cache``, ``chunks_zero``, ``retries``, ``cache``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from cryostash.config import Settings
from cryostash.errors import UsageError
from cryostash.objects.cache import ChunkCache
from cryostash.store import Store
from cryostash.transfer.chunking import ChunkParams
from cryostash.transfer.progress import Progress
from cryostash.types import DumpStats, FileEntry
from cryostash.units import format_size

if TYPE_CHECKING:  # the pipeline loads when chunks move (not for ls, inspect, rm...)
    from cryostash.transfer.baseline import Baseline
    from cryostash.transfer.pack import PackResult, Reserve
    from cryostash.transfer.unpack import UnpackStats


def cache_for(settings: Settings, store: Store) -> ChunkCache | None:
    """The chunk cache to use with ``store``, or None (no cache set, or a store that is
    not remote: its objects are already local, caching them would double the disk used)."""
    folder = settings.transfer.cache_dir
    if folder is None or not store.remote:
        return None
    return ChunkCache(folder, settings.transfer.cache_max_bytes)


def cached(settings: Settings, store: Store) -> Store:
    """``store`` reading through the settings' chunk cache, when it has one."""
    cache = cache_for(settings, store)
    return store if cache is None else store.with_cache(cache)


def pack_image(
    settings: Settings,
    store: Store,
    image_dir: Path,
    *,
    reserve: Reserve,
    jobs: int,
    callback: Progress | None = None,
    baseline: Baseline | None = None,
) -> PackResult:
    """:func:`cryostash.transfer.pack` with the settings' chunking, compression and cache,
    against the image ``baseline`` holds, if any.

    Raises:
        UsageError: a chunk size that is not a power of two in [256 B, 4 MiB].
        and whatever :func:`~cryostash.transfer.pack` raises.
    """
    from cryostash.transfer.pack import pack

    t = settings.transfer
    return pack(
        cached(settings, store),
        image_dir,
        reserve=reserve,
        params=ChunkParams(t.chunk_size),
        level=t.compression,
        jobs=_connections(store, jobs),
        callback=callback,
        baseline=None if baseline is None else baseline.image,
        record_states=baseline is not None,  # the image may be kept for the next pack
    )


def unpack_image(
    settings: Settings,
    store: Store,
    files: Sequence[FileEntry],
    dest: Path,
    *,
    jobs: int,
    callback: Progress | None = None,
) -> UnpackStats:
    """:func:`cryostash.transfer.unpack` with the settings' cache."""
    from cryostash.transfer.unpack import unpack

    jobs = _connections(store, jobs)
    return unpack(cached(settings, store), files, dest, jobs=jobs, callback=callback)


def require_cache(settings: Settings, store: Store) -> ChunkCache:
    """:func:`cache_for`, which must not be None (``prefetch`` is pointless without it).

    Raises:
        UsageError: the store is local, or the cache is turned off (named in the message).
    """
    cache = cache_for(settings, store)
    if cache is None:
        raise UsageError(
            f"store {store.url} is on this host's disk: it has no chunk cache"
            if not store.remote
            else "prefetch needs the chunk cache, which is turned off (--cache none or "
            "CRYOSTASH_CACHE=none): name a cache folder with --cache DIR"
        )
    return cache


def prefetch_image(
    settings: Settings,
    store: Store,
    files: Sequence[FileEntry],
    *,
    jobs: int,
    callback: Progress | None = None,
) -> dict[str, Any]:
    """:func:`cryostash.transfer.prefetch.prefetch` into the settings' cache, on the
    transfer threads of ``store``; returns the stats ``prefetch`` records and prints:
    ``chunks_total``, ``chunks_cached``, ``bytes_cached``, ``chunks_downloaded``,
    ``bytes_downloaded``, ``chunks_uncached``, ``retries``, ``duration_s``, ``cache``
    (the folder), ``cache_max_bytes``, ``skipped`` (None) and ``warning`` (None, or
    why the cache will not serve the whole checkpoint).

    Raises:
        UsageError: no cache for this store (see :func:`require_cache`).
        and whatever :func:`~cryostash.transfer.prefetch.prefetch` raises.
    """
    from cryostash.transfer.prefetch import prefetch

    cache = require_cache(settings, store)
    jobs = _connections(store, jobs)
    done = prefetch(store.with_cache(cache), files, jobs=jobs, callback=callback)
    warning = None
    if done.chunks_uncached:
        size = done.bytes_cached + done.bytes_downloaded
        why = (
            f"the chunk cache bound ({format_size(cache.max_bytes)}, --cache-size) is "
            f"smaller than this checkpoint ({format_size(size)})"
            if size > cache.max_bytes
            else "the chunk cache could not hold them (is its folder full or not writable?)"
        )
        warning = (
            f"{why}: {done.chunks_uncached} of its {done.chunks_total} chunks are not "
            "cached, and a restore will download them"
        )
    return {
        "skipped": None,
        **{k: round(v, 6) if k == "duration_s" else v for k, v in done.as_dict().items()},
        "cache": str(cache.root),
        "cache_max_bytes": cache.max_bytes,
        "warning": warning,
    }


def prefetch_skipped(reason: str) -> dict[str, Any]:
    """The stats of a prefetch that had nothing to do (``skipped``: why): zeros."""
    return {
        "skipped": reason,
        "chunks_total": 0,
        "chunks_cached": 0,
        "bytes_cached": 0,
        "chunks_downloaded": 0,
        "bytes_downloaded": 0,
        "chunks_uncached": 0,
        "retries": 0,
        "duration_s": 0.0,
        "cache": None,
        "cache_max_bytes": None,
        "warning": None,
    }


def _connections(store: Store, jobs: int) -> int:
    """Threads of a transfer: ``jobs`` on local disk (CPU and disk bound), twice as many
    for a remote store (each request waits on the network most of its time)."""
    return 2 * jobs if store.remote else jobs


def _frozen_s(details: Mapping[str, Any]) -> float | None:
    """CRIU's ``frozen_time`` (microseconds) in seconds, if the engine reported it."""
    value = details.get("frozen_time", details.get("frozen_time_us"))
    if isinstance(value, int | float) and not isinstance(value, bool):
        return round(value / 1e6, 6)
    return None


def create_stats(
    settings: Settings, dump: DumpStats, packed: PackResult, total_s: float
) -> dict[str, Any]:
    """The stats of a create (see the module docstring)."""
    s = packed.stats
    return {
        "frozen_s": _frozen_s(dump.details),
        "dump_s": round(dump.duration_s, 6),
        "upload_s": round(s.duration_s, 6),
        "total_s": round(total_s, 6),
        "files": s.files,
        "bytes_scanned": s.bytes_scanned,
        "bytes_new": s.bytes_new,
        "bytes_uploaded": s.bytes_uploaded,
        "bytes_stored": s.bytes_stored,
        "chunks_total": s.chunks_total,
        "chunks_unique": s.chunks_unique,
        "chunks_new": s.chunks_new,
        "chunks_zero": s.chunks_zero,
        "chunks_known": s.chunks_known,
        "chunks_present": s.chunks_present,
        "chunks_cached": s.chunks_cached,
        "retries": s.retries,
        "bytes_hashed": s.bytes_hashed,
        "bytes_hashed_whole": s.bytes_hashed_whole,
        "bytes_compared": s.bytes_compared,
        "chunks_reused": s.chunks_reused,
        "chunking": ChunkParams(settings.transfer.chunk_size).as_dict(),
        "compression": (
            "none" if settings.transfer.compression is None
            else f"zstd:{settings.transfer.compression}"
        ),
        "engine": dict(dump.details),
    }


def restore_stats(
    down: UnpackStats, restore_s: float, total_s: float, cache: bool
) -> dict[str, Any]:
    """The stats of a restore (see the module docstring)."""
    return {
        "download_s": round(down.duration_s, 6),
        "restore_s": round(restore_s, 6),
        "total_s": round(total_s, 6),
        "bytes_restored": down.bytes_restored,
        "bytes_downloaded": down.bytes_downloaded,
        "bytes_from_cache": down.bytes_from_cache,
        "chunks_total": down.chunks_total,
        "chunks_downloaded": down.chunks_downloaded,
        "chunks_from_cache": down.chunks_from_cache,
        "chunks_zero": down.chunks_zero,
        "retries": down.retries,
        "cache": cache,
    }
