"""``cryostash inspect TARGET (NAME | --latest [filters]) [--json | --log | --tree | --files |
--memory | --cmdline | --env]``: everything known of one checkpoint; with ``--log`` its
stored dump log; with ``--tree``/``--files``/``--memory``/``--cmdline``/``--env``, what its
CRIU images hold
(:mod:`cryostash.operations.inspect_contents`)."""

from __future__ import annotations

import argparse
from typing import Any

from cryostash.cli.context import Context, print_json
from cryostash.cli.filters import add_selection, selected_name
from cryostash.cli.present import say, write_log


def register(sub: Any) -> None:
    """Add the ``inspect`` sub-parser."""
    p: argparse.ArgumentParser = sub.add_parser("inspect", help="show one checkpoint")
    add_selection(p)
    p.add_argument("--checkpoint-dir", metavar="URL", help="the store holding it")
    # --log prints the stored log as it is: it has no JSON form, so the two are refused
    # together (exit 2) rather than one silently ignored.
    output = p.add_mutually_exclusive_group()
    output.add_argument("--json", action="store_true", help="print JSON")
    look = p.add_argument_group("inside the checkpoint (read from its CRIU images)")
    look.add_argument("--tree", action="store_true", help="process tree: PIDs, commands, threads")
    look.add_argument(
        "--files", action="store_true", help="open files, sockets (addresses, states), pipes"
    )
    look.add_argument("--memory", action="store_true", help="memory mappings and sizes")
    look.add_argument("--cmdline", action="store_true",
                      help="the process tree with each process's command line (from its memory)")
    look.add_argument("--env", action="store_true",
                      help="the process tree with each process's environment (it may hold "
                      "secrets: shown only when asked)")
    output.add_argument("--log", action="store_true",
                   help="print the engine's stored log of the dump (CRIU's dump.log: its first "
                   "16 KiB and last 48 KiB) instead")
    p.set_defaults(func=run)


def run(args: argparse.Namespace, ctx: Context) -> int:
    """Print the catalog row and manifest summary."""
    name = selected_name(args, ctx)
    if args.tree or args.files or args.memory or args.cmdline or args.env:
        return _look(args, ctx, name)
    from cryostash.operations.inspect import Inspection, InspectRequest, inspect

    request = InspectRequest(
        args.target, name, args.checkpoint_dir, history=not args.log, log=args.log
    )
    view = ctx.call("inspect", inspect, request, Inspection)
    if view.log is not None:
        write_log(view.log)
        return 0
    data = view.as_dict()
    data["last_restore"] = view.last_restore.as_dict() if view.last_restore else None
    if args.json:
        print_json(data)
        return 0
    for line in _text(data):
        say(line)
    return 0


_ROW = ("status", "host", "engine", "engine_version", "created_at", "committed_at", "kernel",
        "root_pid", "store", "size_bytes")


def _text(data: dict[str, Any]) -> list[str]:
    """``inspect``'s text: the checkpoint, then one headed section each for its labels,
    files, statistics, the engine's own statistics (CRIU's timings) and the last restore."""
    lines = [f"checkpoint {data['target']}/{data['name']}"]
    lines += [f"  {key + ':':<16}{data[key]}" for key in _ROW]
    lines += ["", "labels"]
    lines += [f"  {k}={v}" for k, v in sorted(data["labels"].items())] or ["  -"]
    size = sum(f["size"] for f in data["files"])
    lines += ["", f"files: {len(data['files'])} ({size} bytes; --json lists them)"]
    stats = data["stats"]
    plain = {k: v for k, v in stats.items() if not isinstance(v, dict)}
    if plain:
        lines += ["", "statistics (times in s, sizes in bytes)"]
        lines += [f"  {k + ':':<20}{v}" for k, v in sorted(plain.items())]
        if isinstance(stats.get("chunking"), dict):
            chunking = ", ".join(f"{k} {v}" for k, v in stats["chunking"].items())
            lines.append(f"  {'chunking:':<20}{chunking}")
    engine = stats.get("engine")
    if isinstance(engine, dict) and engine:
        lines += ["", f"{data['engine']}'s own statistics (from the dump; _us: microseconds)"]
        for key, value in engine.items():
            shown = " ".join(map(str, value)) if isinstance(value, list) else value
            lines.append(f"  {key + ':':<24}{shown}")
    last = data["last_restore"]
    if last is not None:
        lines += ["", f"last restore: {last['time']} on {last['host']}"]
        lines += [f"  {k + ':':<20}{v}" for k, v in sorted(last["detail"].items())]
    return lines


def _look(args: argparse.Namespace, ctx: Context, name: str) -> int:
    """``--tree``/``--files``/``--memory``: the sections asked for, text or JSON."""
    from cryostash.cli import show_contents
    from cryostash.operations.inspect_contents import (
        ContentsRequest,
        ContentsView,
        inspect_contents,
    )

    request = ContentsRequest(
        args.target, name, args.checkpoint_dir, args.tree, args.files, args.memory,
        args.cmdline, args.env,
    )
    data = ctx.call("inspect-contents", inspect_contents, request, ContentsView).as_dict()
    if args.json:
        print_json(data)
        return 0
    shown = [
        (key, show) for key, show in (
            ("tree", show_contents.show_tree), ("files", show_contents.show_files),
            ("memory", show_contents.show_memory),
        ) if key in data
    ]
    for i, (key, show) in enumerate(shown):
        if i:
            say()
        show(data[key])
    return 0
