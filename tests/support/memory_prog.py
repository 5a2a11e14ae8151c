"""A process that holds SIZE MiB resident (first half random bytes, second half written
zeros) and waits; on SIGUSR1 it rewrites 5% of that memory with new random bytes.

Usage: ``memory_prog.py SIZE_MIB STATUS_FILE``

- When the memory is in place it writes ``0`` to STATUS_FILE (atomically).
- On each SIGUSR1 it rewrites one contiguous run of ``SIZE/20`` bytes inside the random
  half (at an eighth of the buffer, moving by that length each time) and then writes the
  number of rewrites done to STATUS_FILE. So a second checkpoint differs from the first
  in 5% of the memory, in one region: what content-defined chunking is meant to find.

Used by the dedup tests (tests/test_pipeline_criu.py) and by bench/checkpoint_bench.py.
"""

from __future__ import annotations

import os
import signal
import sys
import time
from typing import Any

BLOCK = 1 << 20


def _write_status(path: str, value: int) -> None:
    tmp = f"{path}.tmp"
    with open(tmp, "w") as fh:
        fh.write(str(value))
    os.replace(tmp, path)


def fill(urandom: Any, view: memoryview) -> None:
    """Overwrite ``view`` with random bytes, in place."""
    for pos in range(0, len(view), BLOCK):
        part = view[pos : pos + BLOCK]
        got = 0
        while got < len(part):
            got += urandom.readinto(part[got:])


def main() -> None:
    size = int(sys.argv[1]) << 20
    status = sys.argv[2]
    half = size // 2
    memory = bytearray(size)
    view = memoryview(memory)
    # Random bytes are read straight into the buffer: no temporary objects, so that the
    # rest of the process's memory barely changes between two checkpoints.
    urandom = open("/dev/urandom", "rb", buffering=0)  # noqa: SIM115 (kept open)
    fill(urandom, view[:half])
    zeros = bytes(BLOCK)
    for start in range(half, size, BLOCK):  # written zeros: resident pages
        end = min(start + BLOCK, size)
        view[start:end] = zeros[: end - start]
    wanted = [0]
    signal.signal(signal.SIGUSR1, lambda *_: wanted.__setitem__(0, wanted[0] + 1))
    done = 0
    _write_status(status, done)
    run = size // 20
    while True:
        if done < wanted[0]:
            start = (size // 8 + done * run) % max(1, half - run)
            fill(urandom, view[start : start + run])
            done += 1
            _write_status(status, done)
        time.sleep(0.02)


if __name__ == "__main__":
    main()
