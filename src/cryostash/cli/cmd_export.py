"""``cryostash export TARGET (NAME | --latest [filters]) [-o FILE] [--compress zstd|gzip|none]``:
a podman checkpoint (imported, or made with ``--engine podman``) as a container checkpoint
archive that ``podman container restore --import`` restores (see
:mod:`cryostash.operations.export_archive`). Without ``-o`` the archive goes to stdout
(never to a terminal); ``-o -`` is stdout too. FILE must be missing or a regular file
(a link, folder, device or FIFO: exit 2); it is written 0600 beside it and renamed into
place when whole. Prints nothing on stdout with ``-o``; ``--json`` prints what was
written."""

from __future__ import annotations

import argparse
import sys
from typing import Any

from cryostash.cli.context import Context, print_json
from cryostash.cli.filters import add_selection, selected_name
from cryostash.cli.present import quiet_stdout


def register(sub: Any) -> None:
    """Add the ``export`` sub-parser."""
    p: argparse.ArgumentParser = sub.add_parser(
        "export", help="write a podman checkpoint as a container checkpoint archive"
    )
    add_selection(p)
    p.add_argument("--checkpoint-dir", metavar="URL", help="the store holding it")
    p.add_argument(
        "-o", "--output", metavar="FILE",
        help="write here: a new or regular file, created 0600 (default, or -: stdout)",
    )
    p.add_argument(
        "--compress", choices=("zstd", "gzip", "none"),
        help="compression (default: as imported; none for a created checkpoint)",
    )
    p.add_argument("--json", action="store_true", help="print what was written as JSON (-o)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace, ctx: Context) -> int:
    """Export the checkpoint."""
    from cryostash import UsageError
    from cryostash.operations.export_archive import ExportRequest, export_archive

    if args.output == "-":
        args.output = None
    if args.output is None and sys.stdout.isatty():
        raise UsageError("export: stdout is a terminal; write to a file with -o FILE")
    if args.output is None and args.json:
        raise UsageError("export --json needs -o FILE (stdout carries the archive)")
    name = selected_name(args, ctx)
    request = ExportRequest(
        args.target, name, output=args.output or None, compress=args.compress,
        checkpoint_dir=args.checkpoint_dir,
    )
    sys.stdout.flush()
    try:
        done = export_archive(
            ctx.repository, request, None if args.output else sys.stdout.buffer
        )
        if args.output is None:
            sys.stdout.buffer.flush()
    except BaseException:
        if args.output is None:  # stdout may be a closed pipe: do not fail again at exit
            quiet_stdout()
        raise
    if args.output is not None and args.json:
        print_json({"target": args.target, "name": name, "output": args.output,
                    **done.as_dict()})
    return 0

