"""Argument parsing, dispatch, and the one place errors become exit codes.

Exit codes: 0 success; a :class:`~cryostash.errors.CryostashError`'s ``exit_code``;
:data:`~cryostash.errors.EXIT_INTERRUPTED` on Ctrl-C;
:data:`~cryostash.errors.EXIT_BROKEN_PIPE` when stdout is a pipe closed by its reader
(``| head``), quietly (the table: :mod:`cryostash.errors`). An error's message is one line
(stored text quoted in it escaped) unless the error says it has several.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from cryostash.cli import (
    cmd_catalog,
    cmd_completion,
    cmd_create,
    cmd_daemon,
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
from cryostash.cli.parsing import CliParser, add_global_options, add_globals_to_verbs, merge_globals
from cryostash.cli.present import quiet_stdout, say

_COMMANDS = (
    cmd_create, cmd_ls, cmd_rm, cmd_restore, cmd_inspect, cmd_events, cmd_db, cmd_doctor,
    cmd_verify, cmd_gc, cmd_catalog, cmd_prune, cmd_prefetch, cmd_migrate, cmd_store, cmd_key,
    cmd_import, cmd_export, cmd_diff, cmd_completion, cmd_daemon,
)


def build_parser() -> argparse.ArgumentParser:
    """The whole ``cryostash`` parser: global options (accepted after the verb too), then
    one sub-parser per verb (:mod:`cryostash.cli.parsing` for the conventions)."""
    parser = CliParser(
        prog="cryostash",
        description="Checkpoint processes with CRIU into any fsspec store, "
        "catalogued in SQL, restorable on any host.",
        epilog="Global options are accepted before or after the verb. "
        "`cryostash VERB --help` for a verb's options; docs/cli.md or `man cryostash`.",
    )
    parser.add_argument(
        "--version",
        action="store_true",
        help="print the versions of cryostash, of the CRIU it would use and of the catalog "
        "schema, then exit",
    )
    add_global_options(parser)
    sub = parser.add_subparsers(dest="verb", metavar="VERB", parser_class=CliParser)
    for command in _COMMANDS:
        command.register(sub)
    add_globals_to_verbs(parser)
    parser.set_defaults(root_parser=parser)  # for `completion`, which describes all of it
    return parser


def short_help(parser: argparse.ArgumentParser) -> str:
    """What ``cryostash`` alone prints: the usage line, the verbs, where to read more."""
    (verbs,) = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    lines = ["usage: cryostash [GLOBAL OPTIONS] VERB [OPTIONS]", "", "verbs:"]
    width = max(len(choice.dest) for choice in verbs._choices_actions) + 2
    for choice in verbs._choices_actions:
        lines.append(f"  {choice.dest:<{width}}{choice.help or ''}")
    lines += [
        "",
        "`cryostash --help` for the global options, `cryostash VERB --help` for a verb's,",
        "`cryostash --version` for the versions.",
    ]
    return "\n".join(lines)


def run(argv: Sequence[str] | None = None) -> int:
    """Parse ``argv``, run the verb, map errors to exit codes and messages on stderr."""
    parser = build_parser()
    args = merge_globals(parser.parse_args(argv))
    if args.version:
        return _print_versions(args)
    if args.verb is None:
        for line in short_help(parser).splitlines():
            say(line)
        return 0
    from cryostash.errors import EXIT_BROKEN_PIPE, EXIT_INTERRUPTED, CryostashError

    ctx = Context(args)
    try:
        code: int = args.func(args, ctx)
        sys.stdout.flush()
        return code
    except BrokenPipeError:
        quiet_stdout()
        return EXIT_BROKEN_PIPE
    except CryostashError as exc:
        say(f"Error: {exc}", err=True, multiline=exc.multiline)
        return exc.exit_code
    except KeyboardInterrupt:
        say("Interrupted", err=True)
        return EXIT_INTERRUPTED
    finally:
        ctx.close()


def _print_versions(args: argparse.Namespace) -> int:
    """``--version``: cryostash's, CRIU's (``--criu``, ``$CRYOSTASH_CRIU`` or found as a
    checkpoint would find it; "not found" is no error) and the catalog schema head."""
    import os

    from cryostash.operations.version import versions

    for line in versions(args.criu or os.environ.get("CRYOSTASH_CRIU") or None).lines():
        say(line)
    return 0
