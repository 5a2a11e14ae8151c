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
3. With ``--lazy``: host-c -> host-a, without prefetch, restored lazily (``migrate
   --lazy``): host-a's cache is empty too, but the process runs as soon as CRIU's metadata
   is in; its 64 MiB follow while it runs, and the script waits for the ``restore`` event
   saying every page arrived.

Run as root: ``.venv/bin/python examples/live_migration.py [--lazy]`` (or ``make
examples``; ``--lazy`` needs userfaultfd and /dev/fuse: ``cryostash doctor``). Set
``CRYOSTASH_EXAMPLE_S3_ENDPOINT`` / ``CRYOSTASH_EXAMPLE_PG_URL`` to use your own services.
"""

from __future__ import annotations

import argparse
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

    def mib(values: list[float | None]) -> list[str]:
        return ["lazy" if v is None else f"{v / MiB:.2f} MiB" for v in values]

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
    if any(r.get("lazy") for r in runs.values()):
        row("final step: eager files (lazy)", mib([r["final"].get("eager_bytes") or 0
                                                    for r in runs.values()]))
        print("(lazy: the download in the downtime is the eager files, CRIU's metadata; "
              "the pages came after the process ran)")
    print()


def lazy_completion(host: Host, report: dict[str, Any], reaper: Reaper) -> dict[str, Any]:
    """Wait for the lazy restore's ``restore`` event at ``host`` (every page in); its detail."""
    reaper.watch(int(report["final"]["helper_pid"]))  # reaped when it exits

    def completed() -> dict[str, Any] | None:
        found: Any = host.json("events", TARGET)
        for event in found:
            if event["name"] == report["name"] and event["host"] == host.name:
                if event["action"] in ("restore-failed", "restore-incomplete"):
                    sys.exit(f"the lazy restore failed: {event['detail'].get('error')}")
                if event["action"] == "restore":
                    return dict(event["detail"])
        return None

    detail: dict[str, Any] = {}

    def arrived() -> bool:
        detail.update(completed() or {})
        return bool(detail)

    wait_for(arrived, 120, "the lazy restore's pages to arrive")
    print(f"[{host.name}] lazy restore: running after {detail['time_to_running_s']:.3f} s, "
          f"every page in after {detail['time_to_complete_s']:.3f} s "
          f"({detail['pages_faulted']} pages faulted, {detail['pages_streamed']} streamed)",
          flush=True)
    return detail


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--lazy", action="store_true",
                        help="then migrate host-c -> host-a lazily (migrate --lazy)")
    lazy = parser.parse_args().lazy
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
            runs = {"a->b with prefetch": with_prefetch, "b->c without prefetch": without}
            if lazy:
                moved = migrate(c, a, int(without["pid"]), "move-3", reaper, counter,
                                "--no-prefetch", "--lazy")
                runs["c->a lazy"] = moved
                lazy_completion(a, moved, reaper)
                if moved["final"]["eager_bytes"] * 20 > BALLAST_MIB * MiB:
                    sys.exit("a lazy restore should fetch only CRIU's metadata before it runs")
            table(runs)
            final = with_prefetch["final"]
            if final["bytes_uploaded"] * 4 > with_prefetch["first_bytes_uploaded"]:
                sys.exit("the final step uploaded more than a quarter of the first step")
            if final["bytes_downloaded"] * 4 > (with_prefetch["first_bytes_downloaded"] or 0):
                sys.exit("after a prefetch the final step downloaded more than a quarter")
            if without["final"]["bytes_downloaded"] < BALLAST_MIB * MiB // 2:
                sys.exit("without prefetch the destination should download the whole image")
            (a if lazy else c).run("events", TARGET)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    print("live-migration: OK")


if __name__ == "__main__":
    main()
