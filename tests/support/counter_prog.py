"""Test program: count in memory, publish the count in a file every INTERVAL_S seconds.

Usage: ``python counter_prog.py PATH [INTERVAL_S] [--flock] [--ballast-mib N]``
(INTERVAL_S defaults to 0.05).

The count lives only in memory: the program never reads ``PATH``, so a restore that
lost its memory would start again from 0. ``PATH`` is opened once and rewritten in
place with a fixed-size record ``"%019d %019d\\n" % (n, n)``: its size never changes
(CRIU checks the size of open files on restore) and a reader can tell a torn read
(the two halves differ) from a good one (:func:`tests.support.processes.read_counter`).

- ``--flock``: also hold an exclusive ``flock`` on ``PATH`` (CRIU refuses to dump that
  without ``--file-locks``).
- ``--ballast-mib N``: first fill N MiB of memory with random bytes that never change
  (the bulk of a real service's memory); the count starts once they are in place.
"""

import argparse
import fcntl
import os
import time

RECORD = "{0:019d} {0:019d}\n"
MiB = 1 << 20


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("path")
    parser.add_argument("interval", nargs="?", type=float, default=0.05)
    parser.add_argument("--flock", action="store_true")
    parser.add_argument("--ballast-mib", type=int, default=0)
    args = parser.parse_args()
    ballast = bytearray(args.ballast_mib * MiB)
    view = memoryview(ballast)
    with open("/dev/urandom", "rb", buffering=0) as urandom:
        for pos in range(0, len(view), MiB):
            urandom.readinto(view[pos : pos + MiB])
    fd = os.open(args.path, os.O_RDWR | os.O_CREAT, 0o644)
    if args.flock:
        fcntl.flock(fd, fcntl.LOCK_EX)
    n = 0
    while True:
        os.pwrite(fd, RECORD.format(n).encode(), 0)
        n += 1
        time.sleep(args.interval)


if __name__ == "__main__":
    main()
