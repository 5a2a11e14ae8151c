"""``cryostash create TARGET NAME [--pid PID | --engine runc|podman|docker]``: checkpoint.

With ``--engine criu`` (the default) ``--pid`` names the root of the process tree.
With a container engine (``runc``, ``podman``, ``docker``) TARGET is the container's
name or id and ``--pid`` is refused. A third-party engine gets ``--pid`` when given,
else TARGET. ``--keep-last N`` / ``--keep-within`` / ``--keep-label`` (see ``prune``)
make that policy TARGET's default and prune TARGET with it after the create.
"""

from __future__ import annotations

import argparse
import sys
from typing import Any

from cryostash.cli.cmd_prune import add_policy_flags, policy_from_args, prune_saving_default
from cryostash.cli.context import Context, engine_opts, parse_labels, print_json, print_stats
from cryostash.cli.present import say

#: Engines whose locator is the container (TARGET), never a PID.
CONTAINER_ENGINES = frozenset({"runc", "podman", "docker"})


def register(sub: Any) -> None:
    """Add the ``create`` sub-parser."""
    p: argparse.ArgumentParser = sub.add_parser(
        "create", help="checkpoint a process tree or a container into the store"
    )
    p.add_argument(
        "target",
        metavar="TARGET",
        help="logical name of what is checkpointed; for a container engine, the container",
    )
    p.add_argument("name", metavar="NAME", help="checkpoint name")
    p.add_argument("--pid", help="PID of the root of the process tree (--engine criu only)")
    p.add_argument(
        "--engine",
        default="criu",
        metavar="ENGINE",
        help="criu (default), runc, podman, docker, or a third-party engine",
    )
    p.add_argument(
        "--leave-running", action="store_true", help="keep the process running after the dump"
    )
    p.add_argument("--checkpoint-dir", metavar="URL", help="use this store instead of the default")
    p.add_argument(
        "--label", action="append", metavar="KEY=VALUE", help="attach a label (repeatable)"
    )
    p.add_argument(
        "--criu-opt",
        action="append",
        metavar="OPT",
        help="extra CRIU option, e.g. --criu-opt tcp-established (repeatable)",
    )
    add_common_flags(p)
    add_policy_flags(p)  # stored as TARGET's default policy, applied after the create
    p.add_argument(
        "--print-stats", action="store_true", help="print timings and byte counts on stderr"
    )
    p.add_argument("--json", action="store_true", help="print the checkpoint as JSON")
    p.set_defaults(func=run)


def add_common_flags(p: argparse.ArgumentParser) -> None:
    """``--tcp-established``, ``--file-locks``, ``--ignore-rootfs`` (create and restore)."""
    p.add_argument(
        "--tcp-established", action="store_true", help="with established TCP connections"
    )
    p.add_argument("--file-locks", action="store_true", help="with file locks")
    p.add_argument(
        "--ignore-rootfs", action="store_true", help="podman: leave out root file system changes"
    )


def common_opts(args: argparse.Namespace) -> list[str]:
    """The engine arguments the flags of :func:`add_common_flags` stand for."""
    flags = ("tcp_established", "file_locks", "ignore_rootfs")
    return ["--" + f.replace("_", "-") for f in flags if getattr(args, f)]


def locator(args: argparse.Namespace) -> str:
    """What the engine dumps: ``--pid`` for criu, TARGET for a container engine.

    Raises:
        UsageError: ``--pid`` missing for criu, or given for a container engine.
    """
    from cryostash import UsageError

    if args.engine == "criu" and not args.pid:
        raise UsageError("--pid PID is required with --engine criu (the process tree's root)")
    if args.engine in CONTAINER_ENGINES and args.pid:
        raise UsageError(
            f"--pid is not taken by --engine {args.engine}: TARGET ({args.target}) is the "
            "container name or id"
        )
    return str(args.pid or args.target)


def run(args: argparse.Namespace, ctx: Context) -> int:
    """Create the checkpoint and print its name (or JSON); with ``--keep-*``, then store
    that policy as the target's default and prune the target with it (``pruned TARGET
    NAME`` on stderr for each checkpoint removed)."""
    policy = policy_from_args(args)
    if policy is not None and not policy.keeps_newest:
        from cryostash import UsageError

        raise UsageError(
            "create: --keep-label needs --keep-last N or --keep-within DURATION too "
            "(otherwise the new checkpoint itself could be pruned)"
        )
    from cryostash.operations.create import CreateRequest, create
    from cryostash.types import CheckpointInfo

    request = CreateRequest(
        args.target,
        args.name,
        locator=locator(args),
        engine=args.engine,
        leave_running=args.leave_running,
        checkpoint_dir=args.checkpoint_dir,
        labels=parse_labels(args.label),
        engine_args=(*common_opts(args), *engine_opts(args.criu_opt)),
    )
    info = ctx.call("create", create, request, CheckpointInfo)
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
