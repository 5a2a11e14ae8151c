"""``cryostash completion bash|zsh|fish``: a shell completion script, generated from the
parser (bash and zsh by :mod:`shtab`, fish by :func:`fish_script`), on stdout.

``make install`` writes the three into the venv (``.venv/share/...``); docs/cli.md says
where a shell looks for them."""

from __future__ import annotations

import argparse
from typing import Any

from cryostash.cli.context import Context
from cryostash.cli.present import say_text

SHELLS = ("bash", "zsh", "fish")


def register(sub: Any) -> None:
    """Add the ``completion`` sub-parser."""
    p: argparse.ArgumentParser = sub.add_parser(
        "completion", help="print a shell completion script (bash, zsh or fish)"
    )
    p.add_argument("shell", metavar="SHELL", choices=SHELLS, help="bash, zsh or fish")
    p.set_defaults(func=run)


def run(args: argparse.Namespace, ctx: Context) -> int:
    """Print the script for ``args.shell`` (``args.root_parser``: the whole parser, set by
    :func:`cryostash.cli.app.build_parser`)."""
    say_text(script(args.root_parser, args.shell))
    return 0


def script(parser: argparse.ArgumentParser, shell: str) -> str:
    """The completion script of ``parser`` for ``shell``."""
    if shell == "fish":
        return fish_script(parser)
    import shtab

    text: str = shtab.complete(parser, shell)
    return text if text.endswith("\n") else text + "\n"


def fish_script(parser: argparse.ArgumentParser) -> str:
    """``complete -c`` lines: the top options, the verbs, then each verb's options and
    sub-verbs (only once that verb is on the line)."""
    prog = parser.prog
    lines = [f"# fish completion for {prog} (generated from its parser)", f"complete -c {prog} -f"]
    lines += _fish_options(prog, parser, "__fish_use_subcommand")
    for name, child, help_text in _verbs(parser):
        lines.append(
            f"complete -c {prog} -n __fish_use_subcommand -a {name} -d {_quote(help_text)}"
        )
        seen = f"'__fish_seen_subcommand_from {name}'"
        lines += _fish_options(prog, child, seen)
        subs = _verbs(child)
        words = " ".join(s for s, _, _ in subs)
        for sub_name, grandchild, sub_help in subs:
            cond = (
                f"'__fish_seen_subcommand_from {name}; "
                f"and not __fish_seen_subcommand_from {words}'"
            )
            lines.append(f"complete -c {prog} -n {cond} -a {sub_name} -d {_quote(sub_help)}")
            lines += _fish_options(
                prog, grandchild, f"'__fish_seen_subcommand_from {name}; and "
                f"__fish_seen_subcommand_from {sub_name}'"
            )
    return "\n".join(lines) + "\n"


def _verbs(parser: argparse.ArgumentParser) -> list[tuple[str, argparse.ArgumentParser, str]]:
    found = []
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            helps = {c.dest: c.help or "" for c in action._choices_actions}
            for name, child in action.choices.items():
                if name in helps:
                    found.append((name, child, helps[name]))
    return found


def _fish_options(prog: str, parser: argparse.ArgumentParser, condition: str) -> list[str]:
    lines = []
    for action in parser._actions:
        if not action.option_strings or action.help == argparse.SUPPRESS:
            continue
        parts = [f"complete -c {prog} -n {condition}"]
        for flag in action.option_strings:
            parts.append(f"-l {flag[2:]}" if flag.startswith("--") else f"-s {flag[1:]}")
        if action.choices:
            parts.append(f"-xa {_quote(' '.join(map(str, action.choices)))}")
        elif action.nargs != 0:
            parts.append("-r -F")
        parts.append(f"-d {_quote(action.help or '')}")
        lines.append(" ".join(parts))
    return lines


def _quote(text: str) -> str:
    """``text`` in fish single quotes (backslash and quote escaped), first line only."""
    text = text.replace("%(default)s", "").splitlines()[0] if text else ""
    return "'" + text.replace("\\", "\\\\").replace("'", "\\'") + "'"
