"""``cryostash catalog rebuild``: recreate the catalog from the store's manifests."""

from __future__ import annotations

import argparse
from typing import Any

from cryostash.cli.context import Context, print_json
from cryostash.cli.present import say


def register(sub: Any) -> None:
    """Add the ``catalog`` sub-parser and its ``rebuild`` action."""
    p: argparse.ArgumentParser = sub.add_parser("catalog", help="catalog maintenance")
    actions = p.add_subparsers(dest="catalog_action", metavar="ACTION", required=True)
    rebuild = actions.add_parser(
        "rebuild", help="import every restorable checkpoint of the store the catalog lacks"
    )
    rebuild.add_argument("--checkpoint-dir", metavar="URL", help="rebuild from this store")
    rebuild.add_argument("--json", action="store_true", help="print the report as JSON")
    rebuild.set_defaults(func=run_rebuild)


def run_rebuild(args: argparse.Namespace, ctx: Context) -> int:
    """Print what was imported and skipped; exit 7 when a manifest had to be skipped."""
    from cryostash import IntegrityError
    from cryostash.operations.rebuild import RebuildRequest, rebuild

    report = rebuild(ctx.repository, RebuildRequest(args.checkpoint_dir))
    if args.json:
        print_json(report.as_dict())
    else:
        for label in report.imported:
            say(f"imported {label}")
        for label, reason in report.skipped:
            say(f"skipped {label}: {reason}")
        say(
            f"{len(report.imported)} imported, {len(report.present)} already in the catalog, "
            f"{len(report.skipped)} skipped"
        )
    return 0 if report.ok else IntegrityError.exit_code
