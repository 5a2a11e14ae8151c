"""``cryostash events [TARGET]``: the event log (checkpoint, restore, delete)."""

from __future__ import annotations

import argparse
from typing import Any

from cryostash.cli.context import Context, print_json
from cryostash.cli.present import table
from cryostash.cli.ranges import EVENTS_LIMIT, whole


def register(sub: Any) -> None:
    """Add the ``events`` sub-parser."""
    p: argparse.ArgumentParser = sub.add_parser("events", help="show the event log")
    p.add_argument("target", metavar="TARGET", nargs="?")
    p.add_argument(
        "--limit", type=whole(EVENTS_LIMIT), metavar="N",
        help=f"only the last N events ({EVENTS_LIMIT[0]} to {EVENTS_LIMIT[1]})",
    )
    p.add_argument("--json", action="store_true", help="print a JSON array")
    p.set_defaults(func=run)


def run(args: argparse.Namespace, ctx: Context) -> int:
    """A header, then one line per event, oldest first, in aligned columns: time, host,
    action, target, name."""
    from cryostash.operations.events import EventsRequest
    from cryostash.operations.events import events as read_events
    from cryostash.types import Event

    request = EventsRequest(args.target, args.limit)
    events = ctx.call("events", read_events, request, tuple[Event, ...])
    if args.json:
        print_json([e.as_dict() for e in events])
        return 0
    table(
        ("TIME", "HOST", "ACTION", "CONTAINER", "CHECKPOINT NAME"),
        ((e.time.isoformat(), e.host, e.action, e.target, e.name) for e in events),
    )
    return 0
