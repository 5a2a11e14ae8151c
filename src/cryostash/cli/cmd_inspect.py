"""``cryostash inspect TARGET (NAME | --latest [filters]) [--json | --log]``: everything known
of one checkpoint, or its stored dump log."""

from __future__ import annotations

import argparse
import sys
from typing import Any

from cryostash.cli.context import Context, print_json
from cryostash.cli.filters import add_selection, selected_name


def register(sub: Any) -> None:
    """Add the ``inspect`` sub-parser."""
    p: argparse.ArgumentParser = sub.add_parser("inspect", help="show one checkpoint")
    add_selection(p)
    p.add_argument("--checkpoint-dir", metavar="URL", help="the store holding it")
    p.add_argument("--json", action="store_true", help="print JSON")
    p.add_argument("--log", action="store_true",
                   help="print the engine's stored log of the dump (CRIU's dump.log: its first "
                   "16 KiB and last 48 KiB) instead")
    p.set_defaults(func=run)


def run(args: argparse.Namespace, ctx: Context) -> int:
    """Print the catalog row and manifest summary."""
    name = selected_name(args, ctx)
    view = ctx.manager.inspect(args.target, name, checkpoint_dir=args.checkpoint_dir)
    if args.log:
        from cryostash.manager.inspection import stored_file

        log = stored_file(ctx.manager.store(args.checkpoint_dir), view.manifest)
        sys.stdout.buffer.write(log)
        return 0
    data = view.as_dict()
    restores = [
        e for e in ctx.manager.events(args.target)
        if e.action == "restore" and e.name == name and e.store_url == view.info.store_url
    ]
    data["last_restore"] = restores[-1].as_dict() if restores else None
    if args.json:
        print_json(data)
        return 0
    for key in (
        "target", "name", "status", "host", "engine", "engine_version", "created_at",
        "committed_at", "kernel", "root_pid", "store", "size_bytes",
    ):
        print(f"{key + ':':<16}{data[key]}")
    labels = ", ".join(f"{k}={v}" for k, v in sorted(data["labels"].items())) or "-"
    print(f"{'labels:':<16}{labels}")
    print(f"{'files:':<16}{len(data['files'])}")
    for key, value in sorted(data["stats"].items()):
        if not isinstance(value, dict):
            print(f"  {key + ':':<20}{value}")
    if data["last_restore"] is not None:
        last = data["last_restore"]
        print(f"{'last restore:':<16}{last['time']} on {last['host']}")
        for key, value in sorted(last["detail"].items()):
            print(f"  {key + ':':<20}{value}")
    return 0
