"""``cryostash gc [--grace DURATION] [--dry-run]``: settle abandoned creates, remove garbage."""

from __future__ import annotations

import argparse
from typing import Any

from cryostash.cli.context import Context, print_json
from cryostash.cli.present import count, say
from cryostash.units import parse_duration


def register(sub: Any) -> None:
    """Add the ``gc`` sub-parser."""
    p: argparse.ArgumentParser = sub.add_parser(
        "gc", help="finish or undo abandoned creates; remove unreferenced objects"
    )
    p.add_argument(
        "--grace",
        metavar="DURATION",
        default="24h",
        help="keep unreferenced objects younger than this (default 24h; e.g. 0, 30m, 7d)",
    )
    p.add_argument("--dry-run", action="store_true", help="say what would be done, do nothing")
    p.add_argument("--checkpoint-dir", metavar="URL", help="collect this store instead")
    p.add_argument("--json", action="store_true", help="print the report as JSON")
    p.set_defaults(func=run)


def run(args: argparse.Namespace, ctx: Context) -> int:
    """Run gc; print what was done (or would be); exit 1 when some removal failed."""
    from cryostash.operations.gc import GcRequest, gc

    grace = parse_duration(args.grace)
    report = gc(ctx.repository, GcRequest(grace, args.dry_run, args.checkpoint_dir))
    if args.json:
        print_json(report.as_dict())
        return 0 if report.ok else 1
    def did(action: str, done: str) -> str:  # "would remove" before, "removed" after
        return f"would {action}" if report.dry_run else done

    for label in report.committed:
        say(f"{did('commit', 'committed')} {label} (abandoned, complete)")
    for label in report.aborted:
        say(f"{did('undo', 'undid')} {label} (abandoned, incomplete)")
    for label in report.adopted:
        say(f"{did('adopt', 'adopted')} {label} (complete, in the store but not in the catalog)")
    for label in report.manifests_deleted:
        say(f"{did('remove', 'removed')} untracked manifest of {label}")
    for path in report.strays_deleted:
        say(f"{did('remove', 'removed')} {path}")
    for path in report.mounts_unmounted:
        say(f"{did('unmount', 'unmounted')} {path} (the view of a lazy-restore helper that died)")
    for path in report.scratch_deleted:
        say(f"{did('remove', 'removed')} scratch folder {path}")
    for path in report.scratch_kept:
        say(
            f"{did('keep', 'kept')} {path}: the image of a process a crashed create stopped "
            f"(see {path}/NOTE; criu restore -D {path} restarts it)"
        )
    for error in report.errors:
        say(f"error: {error}")
    kept = report.kept_young + report.kept_unknown_age
    say(
        f"{did('remove', 'removed')} {count(report.blobs_deleted, 'blob')} "
        f"({report.bytes_deleted} bytes); {did('keep', 'kept')} "
        f"{count(kept, 'unreferenced object')} younger than the grace period"
        + (f" or of unknown age ({report.kept_unknown_age})" if report.kept_unknown_age else "")
    )
    return 0 if report.ok else 1
