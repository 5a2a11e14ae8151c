"""``cryostash prefetch TARGET (NAME | --latest [filters])``: fill the local chunk cache.

On the host that will restore, while the process still runs where it was checkpointed:
every chunk of the checkpoint that the cache lacks is downloaded, verified and cached, so
that the restore downloads nothing. A store on this host's disk needs nothing (exit 0).
``--json`` prints the stats with ``target`` and ``name`` (``cryostash migrate`` reads
``chunks_downloaded``, ``bytes_downloaded`` and ``duration_s``).
"""

from __future__ import annotations

import argparse
from typing import Any

from cryostash.cli.context import Context, print_json
from cryostash.cli.filters import add_selection, selected_name
from cryostash.cli.present import say


def register(sub: Any) -> None:
    """Add the ``prefetch`` sub-parser."""
    p: argparse.ArgumentParser = sub.add_parser(
        "prefetch", help="download a checkpoint's chunks into the local cache ahead of a restore"
    )
    add_selection(p)
    p.add_argument("--checkpoint-dir", metavar="URL", help="the store holding it")
    p.add_argument("--json", action="store_true", help="print the stats as JSON")
    p.set_defaults(func=run)


def run(args: argparse.Namespace, ctx: Context) -> int:
    """Prefetch and print one summary line (or JSON); a warning on stderr when the cache
    bound is too small to keep the whole checkpoint."""
    from cryostash.operations.prefetch import PrefetchRequest, prefetch
    from cryostash.units import format_size

    name = selected_name(args, ctx)
    stats = prefetch(ctx.repository, PrefetchRequest(args.target, name, args.checkpoint_dir))
    if stats["warning"]:
        say(f"warning: {stats['warning']}", err=True)
    if args.json:
        print_json({"target": args.target, "name": name, **stats})
    elif stats["skipped"]:
        say("store is on this host's disk: nothing to prefetch")
    else:
        say(
            f"prefetched {args.target}/{name}: {stats['chunks_total']} chunks, "
            f"{stats['chunks_downloaded']} downloaded "
            f"({format_size(stats['bytes_downloaded'])}), "
            f"{stats['chunks_cached']} already cached, in {stats['duration_s']:.3f} s "
            f"(cache {stats['cache']})"
        )
    return 0
