"""``cryostash ls [TARGET] [--label K=V]... [--host NAME] [--since WHEN] [--all | --pending]``:
list committed checkpoints (those matching every filter); with ``--all`` also the
reservations of creates in progress or abandoned, with ``--pending`` only those."""

from __future__ import annotations

import argparse
import sys
from typing import Any

from cryostash.cli.context import Context, print_json
from cryostash.cli.filters import add_filter_flags, filters
from cryostash.cli.present import say
from cryostash.types import CheckpointInfo


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


def _reservations(args: argparse.Namespace, ctx: Context) -> list[CheckpointInfo]:
    mgr = ctx.manager
    chosen = filters(args)
    rows = mgr.catalog.pending(mgr.store(args.checkpoint_dir).url)
    return [
        i for i in rows
        if (args.target is None or i.target == args.target)
        and (chosen.host is None or i.host == chosen.host)
        and (chosen.since is None or i.created_at >= chosen.since)
        and all(i.labels.get(k) == v for k, v in chosen.labels.items())
    ]


def run(args: argparse.Namespace, ctx: Context) -> int:
    """Print names sorted under a header (Docker's ``CHECKPOINT NAME``), or JSON. With
    ``--all``/``--pending``: ``STATUS`` (``committed``, ``pending``: its creator is alive
    or may be, ``abandoned``: dead or past its lease, the next create or gc undoes it) and
    ``OWNER`` (host, PID, since when) columns."""
    chosen = filters(args)
    if not (args.all or args.pending):
        return _committed(args, ctx)
    infos: list[CheckpointInfo] = []
    if not args.pending:
        infos = ctx.manager.list(args.target, checkpoint_dir=args.checkpoint_dir, filters=chosen)
    from cryostash.manager import creators  # only --all/--pending need it

    infos = sorted([*infos, *_reservations(args, ctx)], key=lambda i: (i.target, i.name, i.id))
    host = ctx.settings.host
    if args.json:
        print_json([
            {**i.summary(), "status": creators.state(i, host)}
            | ({"owner": {"host": i.host, "pid": i.owner_pid,
                          "lease_expires_at": i.lease_expires_at.isoformat()
                          if i.lease_expires_at else None}}
               if i.status.value == "pending" else {})
            for i in infos
        ])
        return 0
    rows = [
        (i.target, i.name, creators.state(i, host),
         _owner(i) if i.status.value == "pending" else "")
        for i in infos
    ]
    heads = ("CONTAINER", "CHECKPOINT NAME", "STATUS", "OWNER")
    widths = [max([len(h), *(len(r[k]) for r in rows)]) for k, h in enumerate(heads)]
    for row in [heads, *rows]:
        say("   ".join(f"{c:<{w}}" for c, w in zip(row, widths, strict=True)).rstrip())
    return 0


def _committed(args: argparse.Namespace, ctx: Context) -> int:
    """Committed checkpoints only (the common case, kept fast: names only, one write).
    Targets and names need no escaping: both match Docker's name rule wherever they
    come from."""
    chosen = filters(args)
    if args.json:
        infos = ctx.manager.list(args.target, checkpoint_dir=args.checkpoint_dir, filters=chosen)
        print_json([i.summary() for i in infos])
        return 0
    pairs = ctx.manager.names(args.target, checkpoint_dir=args.checkpoint_dir, filters=chosen)
    if args.target is not None:
        lines = ["CHECKPOINT NAME", *(name for _, name in pairs)]
    else:
        width = max([len("CONTAINER"), *(len(target) for target, _ in pairs)])
        lines = [f"{'CONTAINER':<{width}}   CHECKPOINT NAME",
                 *(f"{target:<{width}}   {name}" for target, name in pairs)]
    sys.stdout.write("\n".join(lines) + "\n")  # one write: 100,000 names at once
    return 0
