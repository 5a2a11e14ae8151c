"""Test program: count in memory (as ``counter_prog.py``) while holding BALLAST_MIB MiB of
random bytes that never change (the bulk of a real service's memory).

Usage: ``python ballast_counter_prog.py PATH INTERVAL_S BALLAST_MIB``.

The count is published in ``PATH`` with ``counter_prog.py``'s record (read it with
:func:`tests.support.processes.read_counter`); it starts once the ballast is in place.
"""

import os
import sys
import time

RECORD = "{0:019d} {0:019d}\n"


def main() -> None:
    path, interval, ballast_mib = sys.argv[1], float(sys.argv[2]), int(sys.argv[3])
    ballast = bytearray(ballast_mib << 20)
    view = memoryview(ballast)
    with open("/dev/urandom", "rb", buffering=0) as urandom:
        for pos in range(0, len(view), 1 << 20):
            urandom.readinto(view[pos : pos + (1 << 20)])
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    n = 0
    while True:
        os.pwrite(fd, RECORD.format(n).encode(), 0)
        n += 1
        time.sleep(interval)


if __name__ == "__main__":
    main()
