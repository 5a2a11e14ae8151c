"""A process holding SIZE MiB of a known pattern that checks its own memory on a signal.

Usage: ``pattern_prog.py SIZE_MIB SEED STATUS_FILE``

- The memory is SIZE MiB: the first half pseudo-random bytes from ``SEED``
  (``random.Random(SEED).randbytes``, so a test can compute it too), the second half
  written zeros (resident pages, all-zero chunks in the store).
- When the memory is in place it writes ``0 HASH`` to STATUS_FILE (atomically), HASH being
  the SHA-256 of the whole buffer; on each SIGUSR1 it hashes the buffer again (reading
  every page: with a lazy restore, every page is faulted in if not there yet) and writes
  ``N HASH``, N counting the checks.

Used by the lazy-restore tests (tests/test_lazy_restore.py) and bench/lazy_bench.py.
"""

from __future__ import annotations

import hashlib
import os
import random
import signal
import sys
import time

BLOCK = 1 << 20


def write_status(path: str, text: str) -> None:
    """Replace the status file ``path`` with ``text`` atomically (readers never see half)."""
    tmp = f"{path}.tmp"
    with open(tmp, "w") as fh:
        fh.write(text)
    os.replace(tmp, path)


def fill(size: int, seed: int) -> bytearray:
    """The pattern: ``size`` bytes, the first half random from ``seed``, the rest zeros."""
    memory = bytearray(size)
    view = memoryview(memory)
    half = size // 2
    rng = random.Random(seed)
    for start in range(0, half, BLOCK):
        end = min(start + BLOCK, half)
        view[start:end] = rng.randbytes(end - start)
    zeros = bytes(BLOCK)
    for start in range(half, size, BLOCK):
        end = min(start + BLOCK, size)
        view[start:end] = zeros[: end - start]
    return memory


def main() -> None:
    size, seed, status = int(sys.argv[1]) << 20, int(sys.argv[2]), sys.argv[3]
    memory = fill(size, seed)
    view = memoryview(memory)
    wanted = [0]
    signal.signal(signal.SIGUSR1, lambda *_: wanted.__setitem__(0, wanted[0] + 1))
    done = 0
    write_status(status, f"0 {hashlib.sha256(view).hexdigest()}")
    while True:
        if wanted[0] > done:
            done = wanted[0]
            write_status(status, f"{done} {hashlib.sha256(view).hexdigest()}")
        time.sleep(0.01)


if __name__ == "__main__":
    main()
