"""``cryostash ls [TARGET] [--label K=V]... [--host NAME] [--since WHEN]``: list committed
checkpoints (those matching every filter)."""

from __future__ import annotations

import argparse
import sys
from typing import Any

from cryostash.cli.context import Context, print_json
from cryostash.cli.filters import add_filter_flags, filters


def register(sub: Any) -> None:
    """Add the ``ls`` sub-parser."""
    p: argparse.ArgumentParser = sub.add_parser("ls", help="list checkpoints")
    p.add_argument("target", metavar="TARGET", nargs="?", help="only this target")
    p.add_argument("--checkpoint-dir", metavar="URL", help="list this store instead of the default")
    add_filter_flags(p)
    p.add_argument("--json", action="store_true", help="print a JSON array")
    p.set_defaults(func=run)


def run(args: argparse.Namespace, ctx: Context) -> int:
    """Print names sorted under a header (Docker's ``CHECKPOINT NAME``), or JSON."""
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
