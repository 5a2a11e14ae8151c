"""``cryostash restore TARGET (NAME | --latest [filters])``: fetch, verify and restore a
checkpoint. With ``--latest``, the newest committed checkpoint of TARGET that matches the
filters; ``restoring TARGET/NAME`` is printed on stderr, and ``--json`` names it.

The engine recorded with the checkpoint restores it unless ``--engine`` says
otherwise. Container engines restore into the recorded container unless ``--as``
names another. runc needs ``--bundle`` (a bundle path recorded in a checkpoint is never
used unconfirmed). docker refuses to re-create a container whose recorded configuration
asks for more than a safe default unless ``--allow`` names each extra.
"""

from __future__ import annotations

import argparse
from typing import Any

from cryostash.cli.cmd_create import add_common_flags, common_opts
from cryostash.cli.context import Context, engine_opts, print_json, print_stats
from cryostash.cli.filters import add_selection, selected_name
from cryostash.cli.present import say
from cryostash.engines.docker_config import CATEGORIES, allow_word


def register(sub: Any) -> None:
    """Add the ``restore`` sub-parser."""
    p: argparse.ArgumentParser = sub.add_parser("restore", help="restore a checkpoint")
    add_selection(p)
    p.add_argument("--checkpoint-dir", metavar="URL", help="the store holding it")
    p.add_argument(
        "--engine", metavar="ENGINE", help="restore with this engine (default: the recorded one)"
    )
    p.add_argument(
        "--as",
        dest="as_name",
        metavar="NEW_ID",
        help="container engines: restore as this container name or id",
    )
    p.add_argument(
        "--bundle", metavar="DIR", help="runc: the OCI bundle to restore into (required)"
    )
    add_allow_flag(p)
    p.add_argument(
        "--criu-opt", action="append", metavar="OPT", help="extra CRIU option (repeatable)"
    )
    p.add_argument(
        "--lazy",
        action="store_true",
        help="criu engine: return as soon as the process runs; its memory pages follow from "
        "the store (verified) through a detached helper",
    )
    add_common_flags(p)
    p.add_argument(
        "--print-stats", action="store_true", help="print timings and byte counts on stderr"
    )
    p.add_argument("--json", action="store_true", help='print {"pid": N, ...} as JSON')
    p.set_defaults(func=run)


def add_allow_flag(p: argparse.ArgumentParser) -> None:
    """``--allow WHAT`` (repeatable): what a re-created docker container may get beyond
    the fields known to be harmless (:mod:`cryostash.engines.docker_config`)."""
    p.add_argument(
        "--allow",
        action="append",
        metavar="WHAT",
        type=_allow_word,
        help="docker: let a re-created container have WHAT its recorded configuration asks "
        f"for beyond the harmless fields: {', '.join(sorted(CATEGORIES))}, or a field's "
        "own name (MaskedPaths, VolumesFrom...); repeatable",
    )


def _allow_word(text: str) -> str:
    try:
        return allow_word(text)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"{text!r} is not an --allow word: one of {', '.join(sorted(CATEGORIES))}, or a "
            "docker field name (MaskedPaths)"
        ) from None


def run(args: argparse.Namespace, ctx: Context) -> int:
    """Restore and print the restored PID."""
    name = selected_name(args, ctx)
    if args.latest:
        say(f"restoring {args.target}/{name}", err=True, flush=True)
    engine_args = (*common_opts(args), *engine_opts(args.criu_opt))
    if args.lazy:
        from cryostash.operations.restore_lazy import LazyRestoreRequest, restore_lazy

        lazy = LazyRestoreRequest(args.target, name, args.checkpoint_dir, args.engine, engine_args)
        result = restore_lazy(ctx.repository, lazy)
    else:
        from cryostash.operations.restore import RestoreRequest, restore
        from cryostash.types import RestoreResult

        request = RestoreRequest(
            args.target, name, args.checkpoint_dir, engine_args, engine=args.engine,
            container=args.as_name, bundle=args.bundle, allow=tuple(args.allow or ()),
        )
        result = ctx.call("restore", restore, request, RestoreResult)
    if args.print_stats:
        print_stats(result.details)
    if args.json:
        print_json(
            {
                "pid": result.pid,
                "target": args.target,
                "name": name,
                "duration_s": result.duration_s,
                **dict(result.details),
            }
        )
    else:
        say(result.pid)
    return 0
