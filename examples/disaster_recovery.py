"""Disaster recovery: archive checkpoints to S3 under a retention policy, lose the host and
its catalog, rebuild the catalog from the store on a new host, verify every byte, restore.

1. host-a (embedded SQLite catalog on its own disk) checkpoints a counter five times into
   an S3 bucket with ``--keep-last 3``: older checkpoints are pruned as new ones arrive;
2. host-a is lost: its folder (catalog database, scratch, cache) is deleted and the process
   is gone;
3. host-b starts with an empty catalog: ``catalog rebuild`` finds the three checkpoints in
   the store, ``verify --read-data`` reads and checks every chunk, ``restore --latest``
   brings the counter back from the last archived state.

Run as root: ``.venv/bin/python examples/disaster_recovery.py`` (or ``make examples``).
Set ``CRYOSTASH_EXAMPLE_S3_ENDPOINT`` to use your own S3 endpoint.
"""

from __future__ import annotations

import os
import shutil
import signal
import sys
import tempfile
from pathlib import Path
from typing import Any

from services import (
    Host,
    Reaper,
    new_bucket,
    read_counter,
    require_root,
    s3_endpoint,
    start_counter,
    wait_for,
)

TARGET = "archived-app"
KEEP = 3
ROUNDS = 5


def main() -> None:
    require_root()
    work = Path(tempfile.mkdtemp(prefix="cryostash-dr-"))
    try:
        with s3_endpoint() as endpoint, Reaper() as reaper:
            store = f"s3://{new_bucket(endpoint)}/archive"

            def host(name: str) -> Host:
                db = work / name / "catalog.db"
                return Host.make(name, work, store=store, catalog=f"sqlite:///{db}",
                                 endpoint=endpoint)

            a = host("host-a")
            pid, counter = start_counter(work, reaper)
            archived: dict[str, tuple[int, int]] = {}
            for i in range(1, ROUNDS + 1):
                seen = read_counter(counter)
                wait_for(lambda s=seen: read_counter(counter) > s + 2, 10, "the counter")
                name = f"archive-{i}"
                before = read_counter(counter)
                a.run("create", TARGET, name, "--pid", str(pid), "--leave-running",
                      "--keep-last", str(KEEP), "--label", "purpose=dr")
                archived[name] = (before, read_counter(counter))  # the dump saw a value in between
            listed = a.run("ls", TARGET).split()[2:]
            expected = [f"archive-{i}" for i in range(ROUNDS - KEEP + 1, ROUNDS + 1)]
            if listed != expected:
                sys.exit(f"retention kept {listed}, expected {expected}")
            print(f"# retention (--keep-last {KEEP}) kept {', '.join(listed)}")

            print("# disaster: host-a, its process and its catalog are lost")
            os.kill(pid, signal.SIGKILL)
            wait_for(lambda: not Path(f"/proc/{pid}").exists(), 10, "the process to end")
            last = read_counter(counter)
            counter.write_text(f"{0:019d}\n")  # same size; a fresh process would write 1, 2...
            shutil.rmtree(work / "host-a")

            b = host("host-b")
            if not b.run("db", "current").startswith("none"):
                sys.exit("the new host already has a catalog")
            report: Any = b.json("catalog", "rebuild")
            print(f"[host-b] catalog rebuild: {len(report['imported'])} checkpoints "
                  "recovered from the store")
            b.run("ls", TARGET)
            verify: Any = b.json("verify", TARGET, "--read-data")
            if not verify.get("ok"):
                sys.exit(f"verify --read-data found problems: {verify}")
            print("[host-b] verify --read-data: every chunk of every checkpoint is intact")
            result: Any = b.json("restore", TARGET, "--latest")
            restored = reaper.watch(int(result["pid"]))
            low, high = archived[result["name"]]
            wait_for(lambda: read_counter(counter) > 0, 15, "the restored counter to write")
            first = read_counter(counter)
            if not low < first <= high + 2:
                sys.exit(f"the restored counter wrote {first}, not the archived state "
                         f"({low}..{high}): its memory was not restored")
            wait_for(lambda: read_counter(counter) >= first + 5, 15, "the counter to go on")
            print(f"[host-b] restored {TARGET}/{result['name']} as PID {restored}: the counter "
                  f"resumed at {first} (archived between {low} and {high}; it had reached "
                  f"{last} when host-a was lost) and counts on: {read_counter(counter)}")
    finally:
        shutil.rmtree(work, ignore_errors=True)
    print("disaster-recovery: OK")


if __name__ == "__main__":
    main()
