"""``cryostash rm TARGET NAME``: remove a checkpoint and the blobs only it used."""

from __future__ import annotations

import argparse
from typing import Any

from cryostash.cli.context import Context


def register(sub: Any) -> None:
    """Add the ``rm`` sub-parser."""
    p: argparse.ArgumentParser = sub.add_parser("rm", help="remove a checkpoint")
    p.add_argument("target", metavar="TARGET")
    p.add_argument("name", metavar="NAME")
    p.add_argument("--checkpoint-dir", metavar="URL", help="the store holding it")
    p.set_defaults(func=run)


def run(args: argparse.Namespace, ctx: Context) -> int:
    """Remove it; print nothing on success (like ``docker checkpoint rm``)."""
    from cryostash.operations.rm import Removed, RmRequest, rm

    ctx.call("rm", rm, RmRequest(args.target, args.name, args.checkpoint_dir), Removed)
    return 0
