"""``cryostash create TARGET NAME --pid PID``: checkpoint a process tree."""

from __future__ import annotations

import argparse
from typing import Any

from cryostash.cli.context import Context, engine_opts, parse_labels, print_json


def register(sub: Any) -> None:
    """Add the ``create`` sub-parser."""
    p: argparse.ArgumentParser = sub.add_parser(
        "create", help="checkpoint a process tree into the store"
    )
    p.add_argument("target", metavar="TARGET", help="logical name of what is checkpointed")
    p.add_argument("name", metavar="NAME", help="checkpoint name")
    p.add_argument("--pid", required=True, help="PID of the root of the process tree")
    p.add_argument(
        "--leave-running", action="store_true", help="keep the process running after the dump"
    )
    p.add_argument("--checkpoint-dir", metavar="URL", help="use this store instead of the default")
    p.add_argument(
        "--label", action="append", metavar="KEY=VALUE", help="attach a label (repeatable)"
    )
    p.add_argument(
        "--criu-opt",
        action="append",
        metavar="OPT",
        help="extra CRIU option, e.g. --criu-opt tcp-established (repeatable)",
    )
    p.add_argument("--json", action="store_true", help="print the checkpoint as JSON")
    p.set_defaults(func=run)


def run(args: argparse.Namespace, ctx: Context) -> int:
    """Create the checkpoint and print its name (or JSON)."""
    info = ctx.manager.create(
        args.target,
        args.name,
        locator=args.pid,
        leave_running=args.leave_running,
        checkpoint_dir=args.checkpoint_dir,
        labels=parse_labels(args.label),
        engine_args=engine_opts(args.criu_opt),
    )
    if args.json:
        print_json({**info.summary(), "stats": dict(info.stats)})
    else:
        print(info.name)
    return 0
