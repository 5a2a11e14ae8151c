"""``cryostash migrate TARGET --pid PID [--to COMMAND]``: pre-copy live migration.

Pre-copy checkpoints (``NAME-pre1`` .. ``NAME-preN``, the process keeps running; the
destination prefetches each: ``COMMAND prefetch TARGET NAME-preK --json``), then the final
checkpoint ``NAME`` (the process stops), restored at the destination by ``COMMAND migrate
TARGET --receive NAME`` (started and ready before the final dump), or on this host when
``--to`` is not given. See :mod:`cryostash.operations.migrate` for the steps, the downtime
and its parts, and what a failure leaves, :mod:`cryostash.operations.destination` for the
destination's side and :mod:`cryostash.operations.migrate_receive` for ``--receive``.
Prints a table of the steps (``--json``: the report). ``--lazy``: the destination restores
lazily (``restore --lazy``): the downtime ends when the process runs, its memory pages
follow.
"""

from __future__ import annotations

import argparse
import sys
from typing import TYPE_CHECKING, Any

from cryostash.cli.cmd_create import add_common_flags, common_opts, locator
from cryostash.cli.cmd_restore import add_allow_flag
from cryostash.cli.context import Context, engine_opts, parse_labels, print_json
from cryostash.cli.present import say
from cryostash.cli.ranges import PRECOPY, whole

if TYPE_CHECKING:
    from cryostash.operations.migrate import MigrationReport


def register(sub: Any) -> None:
    """Add the ``migrate`` sub-parser."""
    p: argparse.ArgumentParser = sub.add_parser(
        "migrate",
        help="move a running process to another host: pre-copy, then a short stop-and-copy",
    )
    p.add_argument(
        "target",
        metavar="TARGET",
        help="logical name of what is migrated; for a container engine, the container",
    )
    p.add_argument("--pid", help="PID of the root of the process tree (--engine criu only)")
    p.add_argument(
        "--name",
        metavar="NAME",
        help="the final checkpoint's name (default migrate-<UTC yyyymmddThhmmss>); "
        "pre-copies are NAME-pre1 .. NAME-preN",
    )
    p.add_argument(
        "--to",
        metavar="COMMAND",
        help="how to run cryostash on the destination, split like a shell, e.g. "
        "'ssh host-b cryostash' (default: restore on this host); it must see the same "
        "store and catalog",
    )
    p.add_argument(
        "--precopy",
        type=whole(PRECOPY),
        default=1,
        metavar="N",
        help=f"pre-copy checkpoints before the final one, {PRECOPY[0]} to {PRECOPY[1]} "
        "(default 1; 0: plain stop-and-copy)",
    )
    p.add_argument(
        "--no-prefetch",
        dest="prefetch",
        action="store_false",
        help="do not have the destination prefetch the pre-copies",
    )
    p.add_argument(
        "--keep-precopy", action="store_true", help="keep the pre-copy checkpoints afterwards"
    )
    p.add_argument(
        "--no-rollback",
        dest="rollback",
        action="store_false",
        help="when the destination's restore fails, do not restore the process here",
    )
    p.add_argument(
        "--lazy",
        action="store_true",
        help="criu engine: the destination restores lazily: the downtime ends when the "
        "process runs; its memory pages follow from the store (verified) through a detached "
        "helper there, which records a `restore` event when every page is in",
    )
    p.add_argument(
        "--engine",
        default="criu",
        metavar="ENGINE",
        help="criu (default), runc, podman, docker, or a third-party engine",
    )
    p.add_argument("--checkpoint-dir", metavar="URL", help="use this store instead of the default")
    p.add_argument(
        "--label", action="append", metavar="KEY=VALUE", help="label every checkpoint (repeatable)"
    )
    p.add_argument(
        "--criu-opt", action="append", metavar="OPT", help="extra CRIU dump option (repeatable)"
    )
    add_common_flags(p)
    add_allow_flag(p)
    p.add_argument("--json", action="store_true", help="print the report as JSON")
    p.add_argument(
        "--receive",
        metavar="NAME",
        # Internal: the destination's side, which migrate runs through --to (get ready, then
        # restore TARGET/NAME when told to on stdin; JSON lines on stdout). Not for people.
        help=argparse.SUPPRESS,
    )
    p.set_defaults(func=run)


def run(args: argparse.Namespace, ctx: Context) -> int:
    """Migrate and print the report (a table, or JSON); warnings on stderr. With
    ``--receive``: the destination's side
    (:func:`cryostash.operations.migrate_receive.receive`)."""
    from cryostash.operations.migrate import MigrateRequest, default_name, migrate

    if args.receive:
        from cryostash.operations.migrate_receive import ReceiveRequest, receive

        args.json = True  # stdout carries the protocol: no progress bars
        receiving = ReceiveRequest(
            args.target, args.receive, args.checkpoint_dir, tuple(common_opts(args)),
            lazy_engine=args.engine if args.lazy else None, allow=tuple(args.allow or ()),
        )
        receive(ctx.repository, receiving, sys.stdin, sys.stdout)
        return 0
    request = MigrateRequest(
        target=args.target,
        name=args.name or default_name(),
        locator=locator(args),
        engine=args.engine,
        precopy=args.precopy,
        prefetch=args.prefetch,
        keep_precopy=args.keep_precopy,
        rollback=args.rollback,
        checkpoint_dir=args.checkpoint_dir,
        labels=parse_labels(args.label),
        dump_args=(*common_opts(args), *engine_opts(args.criu_opt)),
        restore_args=tuple(common_opts(args)),
        allow=tuple(args.allow or ()),
        lazy=args.lazy,
        to=args.to or None,
    )
    report = migrate(ctx.repository, request)
    for warning in report.warnings:
        say(f"warning: {warning}", err=True)
    if args.json:
        print_json(report.as_dict())
    else:
        for line in format_report(report):
            say(line)
    return 0


def format_report(report: MigrationReport) -> list[str]:
    """The report for people: a table of the steps, the downtime and its parts, the bytes."""
    from cryostash.units import format_size

    f = report.final
    rows = [("STEP", "PROCESS", "DUMP", "UPLOAD", "UPLOADED", "NEW CHUNKS", "DOWNLOAD",
             "DOWNLOADED", "FROM CACHE")]
    for step in report.precopy:
        fetched = step.prefetch
        if fetched and fetched.get("skipped"):
            down, downloaded = "skipped", str(fetched["skipped"])
        elif fetched:
            down = _s(float(fetched["duration_s"]))
            downloaded = format_size(int(fetched["bytes_downloaded"]))
        else:
            down, downloaded = "-", "-"
        rows.append((
            step.name, "running", _s(step.dump_s), _s(step.upload_s),
            format_size(step.bytes_uploaded), str(step.chunks_new), down, downloaded, "-",
        ))
    rows.append((
        f.name, "stopped", _s(f.dump_s), _s(f.upload_s), format_size(f.bytes_uploaded),
        str(f.chunks_new), _s(f.download_s), _size(f.bytes_downloaded, f.lazy),
        _size(f.bytes_from_cache, f.lazy),
    ))
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    lines = [
        f"migrated {report.target} to {report.destination}: PID {f.pid} runs there "
        f"(checkpoint {report.name})",
        *("  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip()
          for row in rows),
    ]
    lazy = " (lazy)" if f.lazy else ""
    parts = (("dump", f.dump_s), ("upload", f.upload_s), ("commit", f.commit_s),
             ("handoff", f.handoff_s), (f"download{' (eager files)' if f.lazy else ''}",
                                        f.download_s),
             ("pid wait", f.pid_wait_s), (f"restore{lazy}", f.restore_s))
    lines.append(
        f"downtime: {_ms(report.downtime_s)} ms = "
        + " + ".join(f"{label} {_ms(value)}" for label, value in parts)
        + " (ms)"
        + (f"; CRIU kept it frozen {_ms(f.frozen_s)} ms of the dump" if f.frozen_s else "")
    )
    first_down = report.first_bytes_downloaded
    if f.bytes_downloaded is not None:
        down = f"{format_size(f.bytes_downloaded)} down"
    else:
        down = f"{format_size(f.eager_bytes or 0)} of eager files down, the pages after"
    if first_down is not None:
        first = f"{format_size(first_down)} down"
    else:
        first = "not prefetched" if report.precopy else "the pages after"
    lines.append(
        f"final step moved {format_size(f.bytes_uploaded)} up, {down}; the first step "
        f"{format_size(report.first_bytes_uploaded)} up, {first}"
    )
    if f.chunks_reused:
        lines.append(
            f"final step cut and hashed {format_size(f.bytes_hashed)} of the "
            f"{format_size(f.bytes_scanned)} it scanned ({format_size(f.bytes_hashed_whole)} "
            f"hashed for whole-file digests): {f.chunks_reused} unchanged chunks proven by "
            f"comparing {format_size(f.bytes_compared)} with the last pre-copy"
        )
    if f.lazy:
        lines.append(
            f"lazy restore: the memory pages arrive while PID {f.pid} runs, served by the "
            f"helper (PID {f.helper_pid}) there; `cryostash events {report.target}` shows "
            "`restore` (lazy) when every page is in, or `restore-failed` (the process killed; "
            f"restore {report.name} by hand)"
        )
    if report.removed:
        lines.append("removed pre-copy checkpoints: " + ", ".join(report.removed))
    return lines


def _size(value: int | None, lazy: bool) -> str:
    """A byte count of the final download: ``lazy`` when the pages come after."""
    from cryostash.units import format_size

    return "lazy" if value is None and lazy else "-" if value is None else format_size(value)


def _s(value: float) -> str:
    return f"{value:.3f} s"


def _ms(value: float) -> str:
    return f"{value * 1000:.0f}"
