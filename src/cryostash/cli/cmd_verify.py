"""``cryostash verify [TARGET [NAME]] [--read-data]``: check catalog, manifests and blobs."""

from __future__ import annotations

import argparse
from typing import Any

from cryostash.cli.context import Context, print_json
from cryostash.cli.present import say


def register(sub: Any) -> None:
    """Add the ``verify`` sub-parser."""
    p: argparse.ArgumentParser = sub.add_parser(
        "verify", help="check that committed checkpoints are whole (catalog, manifest, blobs)"
    )
    p.add_argument("target", metavar="TARGET", nargs="?", help="only this target")
    p.add_argument("name", metavar="NAME", nargs="?", help="only this checkpoint")
    p.add_argument(
        "--read-data", action="store_true", help="also read every blob and check its BLAKE3 hash"
    )
    p.add_argument("--checkpoint-dir", metavar="URL", help="verify this store instead")
    p.add_argument("--json", action="store_true", help="print the report as JSON")
    p.set_defaults(func=run)


def run(args: argparse.Namespace, ctx: Context) -> int:
    """Print one line per problem and a summary; exit 7 when any problem is found."""
    from cryostash import IntegrityError, verify_store

    report = verify_store(
        ctx.manager.repository,
        args.target,
        args.name,
        read_data=args.read_data,
        checkpoint_dir=args.checkpoint_dir,
    )
    if args.json:
        print_json(report.as_dict())
    else:
        for problem in report.problems:
            say(f"{problem.target}/{problem.name}: {problem.message}")
        for target, name in report.untracked:
            say(
                f"note: {target}/{name} is in the store but not in the catalog "
                "(`cryostash catalog rebuild` imports it)"
            )
        read = f", {report.bytes_read} bytes read" if report.read_data else ""
        found = f"{len(report.problems)} problem" + ("" if len(report.problems) == 1 else "s")
        say(
            f"{report.checkpoints} checkpoints, {report.blobs} blobs checked{read}: "
            f"{found if report.problems else 'no problems'}"
        )
    return 0 if report.ok else IntegrityError.exit_code
