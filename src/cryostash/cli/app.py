"""Argument parsing, dispatch, and the one place errors become exit codes.

Exit codes: 0 success; a :class:`~cryostash.errors.CryostashError`'s ``exit_code``;
:data:`~cryostash.errors.EXIT_INTERRUPTED` on Ctrl-C (the table: :mod:`cryostash.errors`).
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence

from cryostash.cli import (
    cmd_catalog,
    cmd_create,
    cmd_db,
    cmd_diff,
    cmd_doctor,
    cmd_events,
    cmd_export,
    cmd_gc,
    cmd_import,
    cmd_inspect,
    cmd_key,
    cmd_ls,
    cmd_migrate,
    cmd_prefetch,
    cmd_prune,
    cmd_restore,
    cmd_rm,
    cmd_store,
    cmd_verify,
)
from cryostash.cli.context import Context
from cryostash.cli.present import say

_COMMANDS = (
    cmd_create, cmd_ls, cmd_rm, cmd_restore, cmd_inspect, cmd_events, cmd_db, cmd_doctor,
    cmd_verify, cmd_gc, cmd_catalog, cmd_prune, cmd_prefetch, cmd_migrate, cmd_store, cmd_key,
    cmd_import, cmd_export, cmd_diff,
)


def build_parser() -> argparse.ArgumentParser:
    """The whole ``cryostash`` parser (global options, then one sub-parser per verb)."""
    parser = argparse.ArgumentParser(
        prog="cryostash",
        description="Checkpoint processes with CRIU into any fsspec store, "
        "catalogued in SQL, restorable on any host.",
    )
    parser.add_argument("--store", metavar="URL", help="store root URL or path [$CRYOSTASH_STORE]")
    parser.add_argument(
        "--catalog", metavar="URL", help="catalog SQLAlchemy URL [$CRYOSTASH_CATALOG]"
    )
    parser.add_argument(
        "--scratch", metavar="DIR", help="local scratch folder [$CRYOSTASH_SCRATCH]"
    )
    parser.add_argument("--host", metavar="NAME", help="this host's name [$CRYOSTASH_HOST]")
    parser.add_argument("--criu", metavar="PATH", help="CRIU binary to use [$CRYOSTASH_CRIU]")
    parser.add_argument(
        "--jobs", type=int, default=4, metavar="N", help="parallel transfers (default 4)"
    )
    parser.add_argument(
        "--storage-option",
        action="append",
        metavar="KEY=VALUE",
        help="fsspec storage option, e.g. endpoint_url=http://... or profile=NAME; VALUE is "
        "JSON if it parses, else text (repeatable) [$CRYOSTASH_STORAGE_OPTIONS, a JSON object]",
    )
    data = parser.add_argument_group("data path (chunking, compression, chunk cache)")
    data.add_argument(
        "--chunk-size", metavar="SIZE", help="average chunk, default 1M [$CRYOSTASH_CHUNK_SIZE]"
    )
    data.add_argument(
        "--compression",
        metavar="LEVEL|none",
        help="zstd level of new chunks, default 3 [$CRYOSTASH_COMPRESSION]",
    )
    data.add_argument(
        "--cache", metavar="DIR|none", help="chunk cache, default DATA/cache [$CRYOSTASH_CACHE]"
    )
    data.add_argument(
        "--cache-size", metavar="SIZE", help="cache bound, default 10G [$CRYOSTASH_CACHE_SIZE]"
    )
    sub = parser.add_subparsers(dest="verb", metavar="VERB", required=True)
    for command in _COMMANDS:
        command.register(sub)
    return parser


def run(argv: Sequence[str] | None = None) -> int:
    """Parse ``argv``, run the verb, map errors to exit codes and messages on stderr."""
    parser = build_parser()
    args = parser.parse_args(argv)
    from cryostash.errors import EXIT_INTERRUPTED, CryostashError

    ctx = Context(args)
    try:
        code: int = args.func(args, ctx)
        return code
    except CryostashError as exc:
        say(f"Error: {exc}", err=True, multiline=True)
        return exc.exit_code
    except KeyboardInterrupt:
        say("Interrupted", err=True)
        return EXIT_INTERRUPTED
    finally:
        ctx.close()
