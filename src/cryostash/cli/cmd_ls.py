"""``cryostash ls [TARGET] [--label K=V]... [--host NAME] [--since WHEN] [--all | --pending]``:
list committed checkpoints (those matching every filter); with ``--all`` also the
reservations of creates in progress or abandoned, with ``--pending`` only those."""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING, Any

from cryostash.cli.context import Context, print_json
from cryostash.cli.filters import add_filter_flags, filters
from cryostash.cli.present import say_lines, table
from cryostash.types import CheckpointInfo

if TYPE_CHECKING:
    from cryostash.operations.ls import Listing


def register(sub: Any) -> None:
    """Add the ``ls`` sub-parser."""
    p: argparse.ArgumentParser = sub.add_parser("ls", help="list checkpoints")
    p.add_argument("target", metavar="TARGET", nargs="?", help="only this target")
    p.add_argument("--checkpoint-dir", metavar="URL", help="list this store instead of the default")
    add_filter_flags(p)
    shown = p.add_mutually_exclusive_group()
    shown.add_argument(
        "-a", "--all", action="store_true",
        help="also list reservations of creates in progress or abandoned, with their owner",
    )
    shown.add_argument("--pending", action="store_true", help="list only those reservations")
    p.add_argument("--json", action="store_true", help="print a JSON array")
    p.set_defaults(func=run)


def _owner(info: CheckpointInfo) -> str:
    pid = f" (PID {info.owner_pid})" if info.owner_pid is not None else ""
    return f"{info.host}{pid} since {info.created_at.isoformat(timespec='seconds')}"


def run(args: argparse.Namespace, ctx: Context) -> int:
    """Print names sorted under a header (Docker's ``CHECKPOINT NAME``), or JSON. With
    ``--all``/``--pending``: ``STATUS`` (``committed``, ``pending``: its creator is alive
    or may be, ``abandoned``: dead or past its lease, the next create or gc undoes it) and
    ``OWNER`` (host, PID, since when) columns."""
    from cryostash.operations.ls import Listing, LsRequest, Show, ls

    show = Show.ALL if args.all else Show.PENDING if args.pending else Show.COMMITTED
    names_only = show is Show.COMMITTED and not args.json
    request = LsRequest(args.target, args.checkpoint_dir, filters(args), show, names_only)
    listing = ctx.call("ls", ls, request, Listing)
    if show is Show.COMMITTED:
        return _committed(args, listing)
    if args.json:
        print_json([
            {**row.info.summary(), "status": row.state}
            | ({"owner": {"host": i.host, "pid": i.owner_pid,
                          "lease_expires_at": i.lease_expires_at.isoformat()
                          if i.lease_expires_at else None}}
               if i.status.value == "pending" else {})
            for row in listing.rows
            for i in (row.info,)
        ])
        return 0
    rows = [
        (i.target, i.name, row.state, _owner(i) if i.status.value == "pending" else "")
        for row in listing.rows
        for i in (row.info,)
    ]
    table(("CONTAINER", "CHECKPOINT NAME", "STATUS", "OWNER"), rows)
    return 0


def _committed(args: argparse.Namespace, listing: Listing) -> int:
    """Committed checkpoints only (the common case, kept fast: names only, one write).
    Escaped like all output: a catalog row written by another tool (or before the name
    rule) may hold anything."""
    if args.json:
        print_json([i.summary() for i in listing.checkpoints])
        return 0
    pairs = listing.names
    if args.target is not None:
        lines = ["CHECKPOINT NAME", *(name for _, name in pairs)]
    else:
        width = max([len("CONTAINER"), *(len(target) for target, _ in pairs)])
        lines = [f"{'CONTAINER':<{width}}   CHECKPOINT NAME",
                 *(f"{target:<{width}}   {name}" for target, name in pairs)]
    say_lines(lines)  # one write: 100,000 names at once
    return 0
