"""``cryostash verify [TARGET [NAME]] [--read-data | --read-data-subset N%|K/M [--seed S]]``:
check catalog, manifests and blobs."""

from __future__ import annotations

import argparse
from typing import Any

from cryostash.cli.context import Context, print_json
from cryostash.cli.present import count, say


def register(sub: Any) -> None:
    """Add the ``verify`` sub-parser."""
    p: argparse.ArgumentParser = sub.add_parser(
        "verify", help="check that committed checkpoints are whole (catalog, manifest, blobs)"
    )
    p.add_argument("target", metavar="TARGET", nargs="?", help="only this target")
    p.add_argument("name", metavar="NAME", nargs="?", help="only this checkpoint")
    reading = p.add_mutually_exclusive_group()
    reading.add_argument(
        "--read-data", action="store_true", help="also read every blob and check its BLAKE3 hash"
    )
    reading.add_argument(
        "--read-data-subset", metavar="N%|K/M",
        help="read only a share of the blobs: N%% (a window that moves with --seed) or part K "
        "of M; repeated runs cover the whole store",
    )
    p.add_argument(
        "--seed", metavar="S", type=_seed,
        help="which N%% window to read (default: the day number, so a daily run moves on)",
    )
    p.add_argument("--checkpoint-dir", metavar="URL", help="verify this store instead")
    p.add_argument("--json", action="store_true", help="print the report as JSON")
    p.set_defaults(func=run)


def _seed(text: str) -> int:
    if not text.strip().isascii() or not text.strip().isdigit() or len(text.strip()) > 18:
        raise argparse.ArgumentTypeError(f"invalid seed {text!r}: expected a whole number >= 0")
    return int(text)


def run(args: argparse.Namespace, ctx: Context) -> int:
    """Print one line per problem and a summary; exit 7 when any problem is found."""
    from cryostash import IntegrityError
    from cryostash.operations.verify import VerifyRequest, verify

    request = VerifyRequest(
        args.target, args.name, args.read_data, args.checkpoint_dir,
        subset=args.read_data_subset, seed=args.seed,
    )
    report = verify(ctx.repository, request)
    if args.json:
        print_json(report.as_dict())
    else:
        for problem in report.problems:
            say(f"{problem.target}/{problem.name}: {problem.message}")
        for target, name in report.untracked:
            say(
                f"note: {target}/{name} is in the store but not in the catalog "
                "(`cryostash catalog rebuild` imports it)"
            )
        read = f", {report.bytes_read} bytes read" if report.read_data else ""
        if report.subset is not None:
            read = f", {len(report.read)} read (subset {report.subset}){read}"
        found = f"{len(report.problems)} problem" + ("" if len(report.problems) == 1 else "s")
        say(
            f"{count(report.checkpoints, 'checkpoint')}, {count(report.blobs, 'blob')} "
            f"checked{read}: "
            f"{found if report.problems else 'no problems'}"
        )
    return 0 if report.ok else IntegrityError.exit_code
