"""A process whose state lives only in memory: it counts, and writes the count to a file.

Usage: python counter.py FILE [INTERVAL_SECONDS]

It never reads FILE back, so if a restore lost its memory it would start again from 0.
"""

import os
import sys
import time


def main() -> None:
    path = sys.argv[1]
    interval = float(sys.argv[2]) if len(sys.argv) > 2 else 0.1
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
