"""``cryostash diff TARGET NAME1 NAME2 [--json]``: what changed between two checkpoints of
one target: processes, open files, sockets, and the bytes of memory that differ (see
:func:`cryostash.operations.diff.diff`). Exits 0 whether or not they differ."""

from __future__ import annotations

import argparse
from typing import Any

from cryostash.cli.context import Context, print_json


def register(sub: Any) -> None:
    """Add the ``diff`` sub-parser."""
    p: argparse.ArgumentParser = sub.add_parser(
        "diff", help="what changed between two checkpoints (processes, files, sockets, memory)"
    )
    p.add_argument("target", metavar="TARGET")
    p.add_argument("name_a", metavar="NAME1", help="the older checkpoint")
    p.add_argument("name_b", metavar="NAME2", help="the newer checkpoint")
    p.add_argument("--checkpoint-dir", metavar="URL", help="the store holding them")
    p.add_argument("--json", action="store_true", help="print JSON")
    p.set_defaults(func=run)


def run(args: argparse.Namespace, ctx: Context) -> int:
    """Compare the two checkpoints and print the differences."""
    from cryostash.cli.show_contents import show_diff
    from cryostash.operations.diff import DiffRequest, diff

    request = DiffRequest(args.target, args.name_a, args.name_b, args.checkpoint_dir)
    found = diff(ctx.repository, request).as_dict()
    if args.json:
        print_json(found)
    else:
        show_diff(found)
    return 0
