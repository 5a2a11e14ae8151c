"""``cryostash prune [TARGET] [--keep-last N] [--keep-within D] [--keep-label K=V]...``.

Removes the checkpoints a retention policy does not keep (restic's ``forget`` rules, see
:mod:`cryostash.retention`), and the blobs only they used, as ``rm`` does. Rules given
here are used as they are; without any, each target's stored default (set by ``create
--keep-last N``) is used. :func:`add_policy_flags` and :func:`policy_from_args` are
shared with ``create``.
"""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING, Any

from cryostash.cli.context import Context, print_json
from cryostash.cli.present import count, say
from cryostash.cli.ranges import KEEP_LAST, whole_number

if TYPE_CHECKING:
    from cryostash.operations.prune import PruneReport
    from cryostash.retention import Policy
    from cryostash.types import CheckpointInfo


def add_policy_flags(p: argparse.ArgumentParser) -> None:
    """``--keep-last N``, ``--keep-within DURATION``, ``--keep-label KEY=VALUE``..."""
    p.add_argument(
        "--keep-last", metavar="N",
        help=f"keep the N newest checkpoints of each target ({KEEP_LAST[0]} to {KEEP_LAST[1]})",
    )
    p.add_argument(
        "--keep-within",
        metavar="DURATION",
        help="keep checkpoints made within DURATION of the target's newest one "
        "(e.g. 90m, 12h, 7d, 2w, 1d12h)",
    )
    p.add_argument(
        "--keep-label",
        action="append",
        metavar="KEY=VALUE",
        help="keep checkpoints carrying this label (repeatable)",
    )


def policy_from_args(args: argparse.Namespace) -> Policy | None:
    """The policy of the ``--keep-*`` flags, or None when none is given.

    Raises:
        UsageError: a malformed value, naming the flag (``--keep-last: invalid count
            '0': expected a whole number >= 1``, ``--keep-within: invalid duration
            '7x': ...``, ``--keep-label: invalid label 'x': expected KEY=VALUE``).
    """
    from cryostash import UsageError
    from cryostash.retention import KeepLabel, KeepLast, KeepWithin, Policy

    rules: list[KeepLast | KeepWithin | KeepLabel] = []
    flag = "--keep-last"
    try:
        if args.keep_last is not None:
            count = whole_number(str(args.keep_last), KEEP_LAST, UsageError, "count")
            rules.append(KeepLast(count))
        flag = "--keep-within"
        if args.keep_within is not None:
            rules.append(KeepWithin(args.keep_within))
        flag = "--keep-label"
        rules.extend(dict.fromkeys(KeepLabel.parse(t) for t in args.keep_label or ()))
    except UsageError as exc:
        raise UsageError(f"{flag}: {exc}") from None
    return Policy(tuple(rules)) if rules else None


def prune_saving_default(
    ctx: Context, target: str, policy: Policy, checkpoint_dir: str | None
) -> list[CheckpointInfo]:
    """``create``/``import --keep-*``: store ``policy`` as ``target``'s default and prune
    ``target`` with it; the checkpoints removed."""
    from cryostash.operations.prune import PruneRequest, prune  # only when pruning

    request = PruneRequest(target, policy, checkpoint_dir, save_default=True)
    report = prune(ctx.repository, request)
    return [removed for plan in report.targets for removed in plan.removed]


def register(sub: Any) -> None:
    """Add the ``prune`` sub-parser."""
    p: argparse.ArgumentParser = sub.add_parser(
        "prune", help="remove the checkpoints a retention policy does not keep"
    )
    p.add_argument(
        "target", metavar="TARGET", nargs="?", help="only this target (default: every target)"
    )
    add_policy_flags(p)
    p.add_argument("--checkpoint-dir", metavar="URL", help="prune this store instead")
    p.add_argument("--dry-run", action="store_true", help="say what would be removed, do nothing")
    p.add_argument("--json", action="store_true", help="print the report as JSON")
    p.set_defaults(func=run)


def run(args: argparse.Namespace, ctx: Context) -> int:
    """Prune; print a line per checkpoint and a summary (or JSON)."""
    from cryostash.operations.prune import PruneRequest, prune

    policy = policy_from_args(args)
    request = PruneRequest(args.target, policy, args.checkpoint_dir, dry_run=args.dry_run)
    report = prune(ctx.repository, request)
    if args.json:
        print_json(report.as_dict())
    else:
        print_report(report)
    return 0


def print_report(report: PruneReport) -> None:
    """The human form: per target its policy, then ``keep``/``remove`` lines; a summary."""
    verb = "would " if report.dry_run else ""
    for plan in report.targets:
        if plan.policy is None:
            say(f"{plan.target}: no policy, left alone")
            continue
        where = "stored default" if plan.source == "default" else "given"
        say(f"{plan.target}: policy {plan.policy.describe()} ({where})")
        for kept in plan.kept:
            say(f"keep {plan.target} {kept.checkpoint.name} ({', '.join(kept.reasons)})")
        for info in plan.removed:
            say(f"{verb}remove {plan.target} {info.name}")
    say(
        f"{report.kept} kept, {report.removed} {'would be ' if report.dry_run else ''}removed, "
        f"{count(report.blobs_deleted, 'chunk')} {'would be ' if report.dry_run else ''}freed "
        f"({report.bytes_freed} bytes)"
    )
