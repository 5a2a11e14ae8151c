"""Live migration: move a running process between hosts with a pre-copy, with and without
prefetch, and show the downtime and the bytes of the final step.

One S3 store (moto on loopback) and one PostgreSQL catalog (a private cluster); three
simulated hosts, each with its own scratch folder and chunk cache. The process is a
counter holding 64 MiB of random bytes that never change (the bulk of a real service).

1. host-a -> host-b, with prefetch: ``cryostash migrate`` checkpoints the running process
   (pre-copy), host-b prefetches it into its cache, then the final checkpoint stops the
   process: it uploads only the chunks that changed, and host-b downloads only those.
2. host-b -> host-c, without prefetch (``--no-prefetch``): the pre-copy still saves the
   upload (the store already holds every unchanged chunk), but host-c, whose cache is
   empty, downloads the whole image while the process is stopped.

Run as root: ``.venv/bin/python examples/live_migration.py`` (or ``make examples``). Set
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

TARGET = "web"
BALLAST_MIB = 64
MiB = 1 << 20


def migrate(source: Host, dest: Host, pid: int, name: str, reaper: Reaper, counter: Path,
            *flags: str) -> dict[str, Any]:
    """Migrate ``pid`` from ``source`` to ``dest``; check the counter goes on there."""
    report: Any = source.json("migrate", TARGET, "--pid", str(pid), "--name", name,
                              "--to", dest.command(), *flags)
    new_pid = reaper.watch(int(report["pid"]))
    stopped_at = read_counter(counter)
    wait_for(lambda: read_counter(counter) >= stopped_at + 5, 15, "the counter to go on")
    print(f"[{dest.name}] PID {new_pid} goes on counting: {stopped_at} -> "
          f"{read_counter(counter)}", flush=True)
    return dict(report)


def table(runs: dict[str, dict[str, Any]]) -> None:
    """Print the downtime, its parts, and the bytes of each migration side by side."""
    heads = list(runs)
    print(f"\n{'':34}" + "".join(f"{h:>22}" for h in heads))

    def row(label: str, values: list[str]) -> None:
        print(f"{label:34}" + "".join(f"{v:>22}" for v in values))

    def ms(key: str) -> list[str]:
        return [f"{1000 * (r['final'].get(key) or 0):.0f} ms" for r in runs.values()]

    def mib(values: list[float]) -> list[str]:
        return [f"{v / MiB:.2f} MiB" for v in values]

    row("downtime (freeze -> running)", [f"{1000 * r['downtime_s']:.0f} ms"
                                         for r in runs.values()])
    for key, label in (("dump_s", "  final dump (process frozen)"),
                       ("upload_s", "  upload of changed chunks"),
                       ("commit_s", "  manifest + catalog commit"),
                       ("handoff_s", "  hand-off to the destination"),
                       ("download_s", "  download at the destination"),
                       ("pid_wait_s", "  waiting for the PID"),
                       ("restore_s", "  CRIU restore")):
        row(label, ms(key))
    row("first step: uploaded", mib([r["first_bytes_uploaded"] for r in runs.values()]))
    row("first step: prefetched", mib([r["first_bytes_downloaded"] or 0
                                       for r in runs.values()]))
    row("final step: uploaded", mib([r["final"]["bytes_uploaded"] for r in runs.values()]))
    row("final step: downloaded", mib([r["final"]["bytes_downloaded"]
                                       for r in runs.values()]))
    row("final step: taken from cache", mib([r["final"]["bytes_from_cache"]
                                             for r in runs.values()]))
    print()


def main() -> None:
    require_root()
    work = Path(tempfile.mkdtemp(prefix="cryostash-migration-"))
    try:
        with s3_endpoint() as endpoint, postgres_url() as catalog, Reaper() as reaper:
            store = f"s3://{new_bucket(endpoint)}/checkpoints"
            a, b, c = (Host.make(n, work, store=store, catalog=catalog, endpoint=endpoint)
                       for n in ("host-a", "host-b", "host-c"))
            pid, counter = start_counter(work, reaper, ballast_mib=BALLAST_MIB)
            print(f"[host-a] counter PID {pid} holds {BALLAST_MIB} MiB, counting: "
                  f"{read_counter(counter)}", flush=True)
            with_prefetch = migrate(a, b, pid, "move-1", reaper, counter)
            without = migrate(b, c, int(with_prefetch["pid"]), "move-2", reaper, counter,
                              "--no-prefetch")
            table({"a->b with prefetch": with_prefetch, "b->c without prefetch": without})
            final = with_prefetch["final"]
            if final["bytes_uploaded"] * 4 > with_prefetch["first_bytes_uploaded"]:
                sys.exit("the final step uploaded more than a quarter of the first step")
            if final["bytes_downloaded"] * 4 > (with_prefetch["first_bytes_downloaded"] or 0):
                sys.exit("after a prefetch the final step downloaded more than a quarter")
            if without["final"]["bytes_downloaded"] < BALLAST_MIB * MiB // 2:
                sys.exit("without prefetch the destination should download the whole image")
            c.run("events", TARGET)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    print("live-migration: OK")


if __name__ == "__main__":
    main()
