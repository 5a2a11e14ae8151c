"""``cryostash inspect TARGET (NAME | --latest [filters])``: everything known of one
checkpoint."""

from __future__ import annotations

import argparse
from typing import Any

from cryostash.cli.context import Context, print_json
from cryostash.cli.filters import add_selection, selected_name
from cryostash.cli.present import say


def register(sub: Any) -> None:
    """Add the ``inspect`` sub-parser."""
    p: argparse.ArgumentParser = sub.add_parser("inspect", help="show one checkpoint")
    add_selection(p)
    p.add_argument("--checkpoint-dir", metavar="URL", help="the store holding it")
    p.add_argument("--json", action="store_true", help="print JSON")
    p.set_defaults(func=run)


def run(args: argparse.Namespace, ctx: Context) -> int:
    """Print the catalog row and manifest summary."""
    name = selected_name(args, ctx)
    view = ctx.manager.inspect(args.target, name, checkpoint_dir=args.checkpoint_dir)
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
        say(f"{key + ':':<16}{data[key]}")
    labels = ", ".join(f"{k}={v}" for k, v in sorted(data["labels"].items())) or "-"
    say(f"{'labels:':<16}{labels}")
    say(f"{'files:':<16}{len(data['files'])}")
    for key, value in sorted(data["stats"].items()):
        if not isinstance(value, dict):
            say(f"  {key + ':':<20}{value}")
    if data["last_restore"] is not None:
        last = data["last_restore"]
        say(f"{'last restore:':<16}{last['time']} on {last['host']}")
        for key, value in sorted(last["detail"].items()):
            say(f"  {key + ':':<20}{value}")
    return 0
