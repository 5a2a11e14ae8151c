"""A process holding SIZE MiB of random bytes that rewrites part of them on SIGUSR1 and
publishes the SHA-256 of the whole buffer, so a test can tell its memory survived a move.

Usage: ``rewrite_prog.py SIZE_MIB STATUS_FILE``

- When the memory is in place it writes ``0 HASH`` to STATUS_FILE (atomically), HASH
  being the SHA-256 of the buffer.
- On SIGUSR1 it rewrites one contiguous run of ``SIZE/20`` bytes with new random bytes
  (the next run each time) and writes ``N HASH`` (N: rewrites done so far).
- On SIGUSR2 it hashes the buffer again (reading every page) and writes ``N HASH``: after
  a checkpoint and restore HASH must be the last one published before.

Used by the live-migration baseline tests (tests/test_migrate_baseline.py).
"""

from __future__ import annotations

import hashlib
import signal
import sys
import time
from typing import BinaryIO

from pattern_prog import BLOCK, write_status  # a sibling: run as a script


def fill(urandom: BinaryIO, view: memoryview) -> None:
    """Overwrite ``view`` with random bytes, in place (no temporary objects)."""
    for pos in range(0, len(view), BLOCK):
        part = view[pos : pos + BLOCK]
        got = 0
        while got < len(part):
            got += urandom.readinto(part[got:]) or 0


def main() -> None:
    size, status = int(sys.argv[1]) << 20, sys.argv[2]
    memory = bytearray(size)
    view = memoryview(memory)
    urandom = open("/dev/urandom", "rb", buffering=0)  # noqa: SIM115 (kept open)
    fill(urandom, view)
    signals = {"rewrite": 0, "check": 0}
    signal.signal(signal.SIGUSR1, lambda *_: signals.__setitem__("rewrite", signals["rewrite"] + 1))
    signal.signal(signal.SIGUSR2, lambda *_: signals.__setitem__("check", signals["check"] + 1))
    done = checked = 0
    run = size // 20
    write_status(status, f"0 {hashlib.sha256(view).hexdigest()}")
    while True:
        if done < signals["rewrite"]:
            start = (size // 8 + done * run) % (size - run)
            fill(urandom, view[start : start + run])
            done += 1
            write_status(status, f"{done} {hashlib.sha256(view).hexdigest()}")
        elif checked < signals["check"]:
            checked = signals["check"]
            write_status(status, f"{done} {hashlib.sha256(view).hexdigest()}")
        time.sleep(0.01)


if __name__ == "__main__":
    main()
