"""Test program: count in memory, publish the count in a file every ~50 ms.

Usage: ``python counter_prog.py PATH [INTERVAL_S [flock]]``.

The count lives only in memory: the program never reads ``PATH``, so a restore that
lost its memory would start again from 0. ``PATH`` is opened once and rewritten in
place with a fixed-size record ``"%019d %019d\\n" % (n, n)``: its size never changes
(CRIU checks the size of open files on restore) and a reader can tell a torn read
(the two halves differ) from a good one. With ``flock`` it also holds an exclusive
``flock`` on ``PATH`` (CRIU refuses to dump that without ``--file-locks``).
"""

import fcntl
import os
import sys
import time

RECORD = "{0:019d} {0:019d}\n"


def main() -> None:
    path = sys.argv[1]
    interval = float(sys.argv[2]) if len(sys.argv) > 2 else 0.05
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    if len(sys.argv) > 3 and sys.argv[3] == "flock":
        fcntl.flock(fd, fcntl.LOCK_EX)
    n = 0
    while True:
        os.pwrite(fd, RECORD.format(n).encode(), 0)
        n += 1
        time.sleep(interval)


if __name__ == "__main__":
    main()
