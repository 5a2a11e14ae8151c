"""The parser class of every ``cryostash`` parser, and the global options a verb also takes.

Conventions (docs/cli.md, "Global options and configuration"):

* no abbreviations: ``--leave`` is not ``--leave-running`` (``allow_abbrev=False``);
* a mistake is reported with the usage of the verb it was made in, and an unknown option
  with the closest ones of that verb ("did you mean --leave-running?", :mod:`difflib`);
* the global options (``--store``, ``--cache``, ...) are accepted after the verb too
  (``prefetch app cp1 --cache none``), except where the verb has an option of that name
  (``ls --host`` is a filter): the verb's meaning wins after the verb. Given both before
  and after, the one after wins (a repeatable one gathers both).
"""

from __future__ import annotations

import argparse
import difflib
import re
from collections.abc import Sequence
from typing import Any, NoReturn

from cryostash.cli.ranges import JOBS, whole

#: Where a global option given after the verb is kept until :func:`merge_globals`.
_AFTER = "_after_verb_"


class CliParser(argparse.ArgumentParser):
    """An :class:`argparse.ArgumentParser` without abbreviations, whose verbs report stray
    arguments themselves (with their own usage and a suggestion)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("allow_abbrev", False)
        super().__init__(*args, **kwargs)

    def parse_known_args(  # type: ignore[override]
        self, args: Sequence[str] | None = None, namespace: argparse.Namespace | None = None
    ) -> tuple[argparse.Namespace, list[str]]:
        """As argparse's, but a parser without sub-verbs (a verb, or ``db upgrade``) refuses
        what it does not know, so that the error shows that verb's usage."""
        parsed, extras = super().parse_known_args(args, namespace)
        if extras and self._subparsers is None and " " in self.prog:
            self.error(f"unrecognized arguments: {' '.join(extras)}")
        return parsed, extras

    def error(self, message: str) -> NoReturn:
        """Print the usage, the message and the closest known option or verb; exit 2."""
        hint = self._suggestion(message)
        super().error(f"{message}{hint}")

    def _suggestion(self, message: str) -> str:
        unknown = re.match(r"unrecognized arguments: (\S+)", message)
        if unknown and unknown.group(1).startswith("-"):
            word = unknown.group(1).split("=", 1)[0]
            known = [o for o in self._option_string_actions if o.startswith("--")]
            longer = sorted(o for o in known if o.startswith(word) and len(word) > 2)
            names = {o[2:]: o for o in known}
            close = longer or [
                names[n] for n in difflib.get_close_matches(word[2:], names, n=1, cutoff=0.7)
            ]
            return f"\ndid you mean {' or '.join(close)}?" if close else ""
        choice = re.match(r"argument \S+: invalid choice: '([^']*)' \(choose from (.*)\)", message)
        if choice:
            options = re.findall(r"'([^']*)'", choice.group(2))
            close = difflib.get_close_matches(choice.group(1), options, n=1, cutoff=0.6)
            return f"\ndid you mean {close[0]}?" if close else ""
        return ""


def add_global_options(parser: argparse.ArgumentParser, *, after_verb: bool = False) -> None:
    """Add the global options to ``parser``: the top parser's own, or (``after_verb``) a
    verb's copies, which set nothing unless given, skip any name the verb already has and
    stay out of the verb's usage and help (its epilog says they are accepted)."""
    data = (
        parser
        if after_verb
        else parser.add_argument_group("data path (chunking, compression, chunk cache)")
    )
    for target, flag, kwargs in _GLOBALS:
        where = data if target == "data" else parser
        if after_verb:
            if flag in parser._option_string_actions:
                continue
            kwargs = {
                **kwargs,
                "dest": _AFTER + flag[2:].replace("-", "_"),
                "default": argparse.SUPPRESS,
                "help": argparse.SUPPRESS,
            }
        where.add_argument(flag, **kwargs)
    if after_verb:
        note = "The global options (cryostash --help) are accepted after the verb too."
        parser.epilog = f"{parser.epilog}\n\n{note}" if parser.epilog else note


def add_globals_to_verbs(parser: argparse.ArgumentParser) -> None:
    """Give every verb (and sub-verb) parser below ``parser`` the global options."""
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for child in dict.fromkeys(action.choices.values()):
                add_global_options(child, after_verb=True)
                add_globals_to_verbs(child)


def merge_globals(args: argparse.Namespace) -> argparse.Namespace:
    """Fold the global options given after the verb into their usual names."""
    for key in [k for k in vars(args) if k.startswith(_AFTER)]:
        value = getattr(args, key)
        delattr(args, key)
        name = key[len(_AFTER):]
        before = getattr(args, name, None)
        if isinstance(value, list) and isinstance(before, list):
            value = before + value
        setattr(args, name, value)
    return args


_GLOBALS: list[tuple[str, str, dict[str, Any]]] = [
    ("main", "--store", {"metavar": "URL", "help": "store root URL or path [$CRYOSTASH_STORE]"}),
    ("main", "--catalog", {
        "metavar": "URL", "help": "catalog SQLAlchemy URL [$CRYOSTASH_CATALOG]"}),
    ("main", "--scratch", {"metavar": "DIR", "help": "local scratch folder [$CRYOSTASH_SCRATCH]"}),
    ("main", "--host", {"metavar": "NAME", "help": "this host's name [$CRYOSTASH_HOST]"}),
    ("main", "--criu", {"metavar": "PATH", "help": "CRIU binary to use [$CRYOSTASH_CRIU]"}),
    ("main", "--jobs", {
        "type": whole(JOBS), "default": 4, "metavar": "N",
        "help": f"parallel transfers, {JOBS[0]} to {JOBS[1]} (default 4)"}),
    ("main", "--storage-option", {
        "action": "append",
        "metavar": "KEY=VALUE",
        "help": "fsspec storage option, e.g. endpoint_url=http://... or profile=NAME; VALUE is "
        "JSON if it parses, else text (repeatable) [$CRYOSTASH_STORAGE_OPTIONS, a JSON object]",
    }),
    ("main", "--daemon", {
        "metavar": "unix:///PATH",
        "help": "run the verb on the cryostash daemon on this socket (exit 13 if it cannot "
        "serve) [$CRYOSTASH_DAEMON]; default: the one on /run/cryostash/cryostash.sock when "
        "it serves this command's store, catalog, scratch and host, else in this process"}),
    ("main", "--no-daemon", {
        "action": "store_true", "help": "run the verb in this process, never on a daemon"}),
    ("data", "--chunk-size", {
        "metavar": "SIZE", "help": "average chunk, default 1M [$CRYOSTASH_CHUNK_SIZE]"}),
    ("data", "--compression", {
        "metavar": "LEVEL|none",
        "help": "zstd level of new chunks, default 3 [$CRYOSTASH_COMPRESSION]",
    }),
    ("data", "--cache", {
        "metavar": "DIR|none", "help": "chunk cache, default DATA/cache [$CRYOSTASH_CACHE]"}),
    ("data", "--cache-size", {
        "metavar": "SIZE", "help": "cache bound, default 10G [$CRYOSTASH_CACHE_SIZE]"}),
]
