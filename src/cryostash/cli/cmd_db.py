"""``cryostash db upgrade`` / ``cryostash db current``: catalog schema migrations."""

from __future__ import annotations

import argparse
from typing import Any

from cryostash.cli.context import Context
from cryostash.cli.present import say


def register(sub: Any) -> None:
    """Add the ``db`` sub-parser and its two actions."""
    p: argparse.ArgumentParser = sub.add_parser("db", help="catalog schema migrations")
    actions = p.add_subparsers(dest="db_action", metavar="ACTION", required=True)
    up = actions.add_parser("upgrade", help="migrate the catalog to this version's schema")
    up.set_defaults(func=run_upgrade)
    cur = actions.add_parser("current", help="print the catalog's schema revision")
    cur.set_defaults(func=run_current)


def run_upgrade(args: argparse.Namespace, ctx: Context) -> int:
    """Upgrade to head and print the revision reached."""
    from cryostash.catalog import schema

    schema.upgrade(ctx.settings.catalog_url)
    say(schema.current(ctx.settings.catalog_url))
    return 0


def run_current(args: argparse.Namespace, ctx: Context) -> int:
    """Print the revision and whether it is head; ``none`` for a catalog not created yet,
    in the words ``doctor`` uses."""
    from cryostash.catalog import schema
    from cryostash.catalog.revisions import NOT_CREATED_NOTE

    current = schema.current(ctx.settings.catalog_url)  # never creates it
    if current is None:
        say(f"none ({NOT_CREATED_NOTE})")
        return 0
    mark = " (head)" if current == schema.HEAD_REVISION else f" (head is {schema.HEAD_REVISION})"
    say(f"{current}{mark}")
    return 0
