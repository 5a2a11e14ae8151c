"""``cryostash prefetch``: (stub, being written)."""

from __future__ import annotations

import argparse
from typing import Any

from cryostash.cli.context import Context
from cryostash.errors import UsageError


def register(sub: Any) -> None:
    """Add the ``prefetch`` sub-parser."""
    p: argparse.ArgumentParser = sub.add_parser("prefetch", help="(not yet available)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace, ctx: Context) -> int:
    """Not yet available."""
    raise UsageError("prefetch is not available yet")
