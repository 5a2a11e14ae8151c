"""Multi-host sharing: three hosts list and restore the same checkpoints; `events` says who.

One S3 store (moto on loopback) and one PostgreSQL catalog (a private cluster), three
simulated hosts (own host name, scratch folder and chunk cache):

1. host-a checkpoints a counter twice: ``warm`` (left running) and ``handover`` (stopped);
2. host-b and host-c see the same list; host-b restores the newest checkpoint host-a made
   (``restore --latest --host host-a``): the counter goes on from where it stopped;
3. host-b checkpoints it (``evening``) and host-c restores host-b's latest;
4. ``events`` shows every checkpoint and restore with the host that did it.

Run as root: ``.venv/bin/python examples/sharing.py`` (or ``make examples``). Set
``CRYOSTASH_EXAMPLE_S3_ENDPOINT`` / ``CRYOSTASH_EXAMPLE_PG_URL`` to use your own services.
"""

from __future__ import annotations

import shutil
import sys
import tempfile
from pathlib import Path
from typing import Any

from services import (
    Host,
    Reaper,
    new_bucket,
    postgres_url,
    read_counter,
    require_root,
    s3_endpoint,
    start_counter,
    wait_for,
)

TARGET = "shared-app"


def restore_latest(host: Host, reaper: Reaper, counter: Path, *filters: str) -> int:
    """Restore the newest matching checkpoint on ``host``; check the counter goes on."""
    stopped_at = read_counter(counter)
    result: Any = host.json("restore", TARGET, "--latest", *filters)
    pid = reaper.watch(int(result["pid"]))
    wait_for(lambda: read_counter(counter) >= stopped_at + 5, 15, "the counter to go on")
    print(f"[{host.name}] restored {TARGET}/{result['name']} as PID {pid}: counter went on "
          f"from {stopped_at} to {read_counter(counter)}", flush=True)
    return pid


def main() -> None:
    require_root()
    work = Path(tempfile.mkdtemp(prefix="cryostash-sharing-"))
    try:
        with s3_endpoint() as endpoint, postgres_url() as catalog, Reaper() as reaper:
            store = f"s3://{new_bucket(endpoint)}/checkpoints"
            a, b, c = (Host.make(n, work, store=store, catalog=catalog, endpoint=endpoint)
                       for n in ("host-a", "host-b", "host-c"))
            pid, counter = start_counter(work, reaper)
            print(f"[host-a] counter PID {pid} is at {read_counter(counter)}")
            a.run("create", TARGET, "warm", "--pid", str(pid), "--leave-running",
                  "--label", "stage=warm")
            a.run("create", TARGET, "handover", "--pid", str(pid), "--label", "stage=handover")
            wait_for(lambda: not Path(f"/proc/{pid}").exists(), 10, "the dumped process to end")
            listings = {h.name: h.run("ls", TARGET) for h in (a, b, c)}
            if len(set(listings.values())) != 1:
                sys.exit(f"the hosts see different checkpoints: {listings}")
            print("# every host sees the same checkpoints")
            c.run("ls", "--label", "stage=warm")
            pid = restore_latest(b, reaper, counter, "--host", "host-a")
            b.run("create", TARGET, "evening", "--pid", str(pid))
            wait_for(lambda: not Path(f"/proc/{pid}").exists(), 10, "the dumped process to end")
            restore_latest(c, reaper, counter, "--host", "host-b")
            events: Any = c.json("events", TARGET)
            print("# who did what (cryostash events):")
            for e in events:
                print(f"  {e['time']}  {e['host']:<7} {e['action']:<10} {e['name']}")
            did = {(e["host"], e["action"], e["name"]) for e in events}
            wanted = {("host-a", "checkpoint", "warm"), ("host-a", "checkpoint", "handover"),
                      ("host-b", "restore", "handover"), ("host-b", "checkpoint", "evening"),
                      ("host-c", "restore", "evening")}
            if not wanted <= did:
                sys.exit(f"events miss {sorted(wanted - did)}")
    finally:
        shutil.rmtree(work, ignore_errors=True)
    print("sharing: OK")


if __name__ == "__main__":
    main()
