"""A process whose state lives only in memory: it counts, and writes the count to a file.

Usage: python counter.py FILE [INTERVAL_SECONDS] [BALLAST_MIB]

It never reads FILE back, so if a restore lost its memory it would start again from 0.
With BALLAST_MIB it also holds that many MiB of random bytes that never change (the bulk
of a real service's memory: what a pre-copy migration moves before the process stops).
"""

import os
import sys
import time


def main() -> None:
    path = sys.argv[1]
    interval = float(sys.argv[2]) if len(sys.argv) > 2 else 0.1
    ballast = bytearray(int(sys.argv[3]) << 20) if len(sys.argv) > 3 else bytearray()
    with open("/dev/urandom", "rb", buffering=0) as urandom:
        view = memoryview(ballast)
        for pos in range(0, len(view), 1 << 20):
            urandom.readinto(view[pos : pos + (1 << 20)])
    count = 0
    while True:
        count += 1
        tmp = f"{path}.tmp"
        with open(tmp, "w") as fh:
            fh.write(f"{count}\n")
        os.replace(tmp, path)
        time.sleep(interval)


if __name__ == "__main__":
    main()
