"""The transfer layer: image folder <-> store, chunked, compressed, verified, pipelined.

- :mod:`~cryostash.transfer.pack` (create): read, chunk (FastCDC), hash (BLAKE3), ask the
  catalog which chunks are new, compress (zstd) and store the new ones, all overlapping,
  on a bounded number of threads with bounded queues.
- :mod:`~cryostash.transfer.unpack` (restore): fetch every distinct chunk once (from the
  local cache when it has it, else from the store), verify, write it at its offsets.
- :mod:`~cryostash.transfer.prefetch`: fill the local chunk cache ahead of a restore.
- :mod:`~cryostash.transfer.datapath`: the manager's entry points (settings -> pipeline,
  and the stats a create or restore records); :mod:`~cryostash.transfer.chunking`,
  :mod:`~cryostash.objects.cache`, :mod:`~cryostash.transfer.scratch`,
  :mod:`~cryostash.transfer.workers`: their parts.

This package imports nothing, so that verbs that move no chunk (``ls``, ``rm``,
``inspect``) never load the pipeline.
"""
