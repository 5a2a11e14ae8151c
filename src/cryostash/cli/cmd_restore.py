"""``cryostash restore TARGET NAME``: fetch, verify and restore a checkpoint."""

from __future__ import annotations

import argparse
from typing import Any

from cryostash.cli.context import Context, engine_opts, print_json


def register(sub: Any) -> None:
    """Add the ``restore`` sub-parser."""
    p: argparse.ArgumentParser = sub.add_parser("restore", help="restore a checkpoint")
    p.add_argument("target", metavar="TARGET")
    p.add_argument("name", metavar="NAME")
    p.add_argument("--checkpoint-dir", metavar="URL", help="the store holding it")
    p.add_argument(
        "--criu-opt", action="append", metavar="OPT", help="extra CRIU option (repeatable)"
    )
    p.add_argument("--json", action="store_true", help='print {"pid": N, ...} as JSON')
    p.set_defaults(func=run)


def run(args: argparse.Namespace, ctx: Context) -> int:
    """Restore and print the restored PID."""
    result = ctx.manager.restore(
        args.target,
        args.name,
        checkpoint_dir=args.checkpoint_dir,
        engine_args=engine_opts(args.criu_opt),
    )
    if args.json:
        print_json({"pid": result.pid, "duration_s": result.duration_s, **dict(result.details)})
    else:
        print(result.pid)
    return 0
