"""``cryostash import TARGET NAME ARCHIVE|-``: a Podman / CRI-O checkpoint archive
(``podman container checkpoint --export``, the kubelet's checkpoint API) into the store,
catalogued with the labels it carries (see :mod:`cryostash.operations.import_archive`).
Prints NAME, or the checkpoint as JSON with ``--json``. ``--keep-*`` act as for
``create``: the policy becomes TARGET's default and TARGET is pruned with it afterwards."""

from __future__ import annotations

import argparse
import sys
from typing import Any

from cryostash.cli.cmd_prune import add_policy_flags, policy_from_args, prune_saving_default
from cryostash.cli.context import Context, parse_labels, print_json, print_stats
from cryostash.cli.present import say


def register(sub: Any) -> None:
    """Add the ``import`` sub-parser."""
    p: argparse.ArgumentParser = sub.add_parser(
        "import", help="store a podman / CRI-O checkpoint archive (tar, tar.gz, tar.zst)"
    )
    p.add_argument("target", metavar="TARGET", help="what the checkpoint is of (a name)")
    p.add_argument("name", metavar="NAME", help="checkpoint name")
    p.add_argument("archive", metavar="ARCHIVE", help="the archive file, or - for stdin")
    p.add_argument("--checkpoint-dir", metavar="URL", help="use this store instead of the default")
    p.add_argument(
        "--label", action="append", metavar="KEY=VALUE",
        help="attach a label (repeatable; wins over the archive's own)",
    )
    p.add_argument(
        "--max-member-size", metavar="SIZE", default="64G",
        help="refuse a member larger than this (default 64G)",
    )
    add_policy_flags(p)
    p.add_argument(
        "--print-stats", action="store_true", help="print timings and byte counts on stderr"
    )
    p.add_argument("--json", action="store_true", help="print the checkpoint as JSON")
    p.set_defaults(func=run)


def run(args: argparse.Namespace, ctx: Context) -> int:
    """Import the archive and print its name (or JSON)."""
    from cryostash import UsageError
    from cryostash.operations.import_archive import ImportRequest, import_archive
    from cryostash.units import parse_size

    max_member = parse_size(args.max_member_size, "--max-member-size")
    policy = policy_from_args(args)
    if policy is not None and not policy.keeps_newest:
        raise UsageError("import: --keep-label needs --keep-last N or --keep-within DURATION")
    request = ImportRequest(
        args.target, args.name, filename=None if args.archive == "-" else args.archive,
        labels=parse_labels(args.label), checkpoint_dir=args.checkpoint_dir,
        max_member=max_member,
    )
    source = None
    if args.archive == "-":
        if sys.stdin.isatty():
            raise UsageError("import -: stdin is a terminal, not an archive")
        source = sys.stdin.buffer
    info = import_archive(ctx.repository, request, source)
    if args.print_stats:
        print_stats(info.stats)
    if args.json:
        print_json({**info.summary(), "stats": dict(info.stats)})
    else:
        say(info.name)
    if policy is not None:
        sys.stdout.flush()
        for removed in prune_saving_default(ctx, args.target, policy, args.checkpoint_dir):
            say(f"pruned {removed.target} {removed.name}", err=True)
    return 0
