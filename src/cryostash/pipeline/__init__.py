"""The chunked, compressed, pipelined transfer between an image folder and a store.

- :func:`pack` (create): read, chunk (FastCDC), hash (BLAKE3), ask the catalog which
  chunks are new, compress (zstd) and store the new ones, all overlapping, on a bounded
  number of threads with bounded queues; returns the manifest's file entries and stats.
- :func:`unpack` (restore): fetch every distinct chunk once (from the local cache when it
  has it, else from the store), decode, verify, and write it at its offsets, in parallel.

See :mod:`cryostash.pipeline.pack` and :mod:`cryostash.pipeline.unpack` for the contracts.
"""

from cryostash.pipeline.pack import PackResult, PackStats, pack
from cryostash.pipeline.unpack import UnpackStats, unpack

__all__ = ["PackResult", "PackStats", "UnpackStats", "pack", "unpack"]
