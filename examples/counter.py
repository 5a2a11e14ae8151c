"""A process whose state lives only in memory: it counts, and writes the count to a file.

Usage: python counter.py FILE [INTERVAL_SECONDS] [BALLAST_MIB]

It never reads FILE back, so if a restore lost its memory it would start again from 1.
FILE is opened once and the count rewritten in place as a fixed-size record: its size
never changes, so whenever a dump catches it, CRIU finds the open file as it left it on
restore (CRIU refuses an open file whose size changed, or that is gone).
With BALLAST_MIB it also holds that many MiB of random bytes that never change (the bulk
of a real service's memory: what a pre-copy migration moves before the process stops).
"""

import os
import sys
import time

RECORD = "{:019d}\n"


def main() -> None:
    path = sys.argv[1]
    interval = float(sys.argv[2]) if len(sys.argv) > 2 else 0.1
    ballast = bytearray(int(sys.argv[3]) << 20) if len(sys.argv) > 3 else bytearray()
    with open("/dev/urandom", "rb", buffering=0) as urandom:
        view = memoryview(ballast)
        for pos in range(0, len(view), 1 << 20):
            urandom.readinto(view[pos : pos + (1 << 20)])
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    count = 0
    while True:
        count += 1
        os.pwrite(fd, RECORD.format(count).encode(), 0)
        time.sleep(interval)


if __name__ == "__main__":
    main()
