"""A process that holds a secret marker in memory and nowhere else, and can tell it.

Usage: ``marker_prog.py MARKER_FILE STATUS_FILE``

- Reads the marker (hex) from MARKER_FILE, deletes the file, and keeps the raw bytes in
  one page of memory among random bytes (so no zero-page shortcut hides it); then
  writes ``ready`` to STATUS_FILE (atomically) and waits.
- On SIGUSR1 it writes the hex of the marker as it holds it to STATUS_FILE: a restored
  process proves it has its memory back.

Used by tests/test_encryption_cli.py.
"""

from __future__ import annotations

import os
import signal
import sys
import time
from typing import Any


def _write(path: str, text: str) -> None:
    tmp = f"{path}.tmp"
    with open(tmp, "w") as fh:
        fh.write(text)
    os.replace(tmp, path)


def main() -> None:
    marker_file, status = sys.argv[1], sys.argv[2]
    with open(marker_file) as fh:
        marker = bytes.fromhex(fh.read().strip())
    os.unlink(marker_file)
    page = bytearray(os.urandom(1 << 16))
    page[4000 : 4000 + len(marker)] = marker
    size = len(marker)
    del marker

    def tell(signum: int, frame: Any) -> None:
        _write(status, bytes(page[4000 : 4000 + size]).hex())

    signal.signal(signal.SIGUSR1, tell)
    _write(status, "ready")
    while True:
        time.sleep(3600)


if __name__ == "__main__":
    main()
