"""``cryostash daemon [run] [--socket PATH] [--group NAME] [--engine ENGINE]
[--allow-checkpoint-dir URL]... [--workers N] [--listen tcp://ADDR:PORT --tls-cert PEM
--tls-key PEM --tls-client-ca PEM]``: serve every verb, Docker's checkpoint
routes, health and metrics on a UNIX socket (and a TCP address with mutual TLS)
(docs/daemon.md), with the global options'
settings (``--store``, ``--catalog``, ...). ``cryostash daemon status``: ask the daemon
on ``--socket`` its version, uptime and operations in flight.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from cryostash.cli.context import Context, print_json
from cryostash.cli.present import say


def register(sub: Any) -> None:
    """Add the ``daemon`` sub-parser."""
    from cryostash.daemon.config import DEFAULT_SOCKET

    p: argparse.ArgumentParser = sub.add_parser(
        "daemon", help="serve the verbs and Docker's checkpoint API on a UNIX socket"
    )
    p.add_argument(
        "action", nargs="?", choices=("run", "status"), default="run",
        help="run the daemon (default), or show the status of the one on --socket",
    )
    p.add_argument(
        "--socket", type=Path, default=DEFAULT_SOCKET, metavar="PATH",
        help=f"the UNIX socket (default {DEFAULT_SOCKET})",
    )
    p.add_argument(
        "--group", metavar="NAME",
        help="let this group use the socket (0660, folder 0750); default: root only",
    )
    p.add_argument(
        "--engine", choices=("runc", "podman", "docker"), metavar="ENGINE",
        help="the engine of Docker's /containers/{id}/checkpoints routes: runc, podman "
        "or docker (without it those routes answer 501)",
    )
    p.add_argument(
        "--allow-checkpoint-dir", action="append", default=[], metavar="URL",
        help="a store requests may name as checkpoint_dir (repeatable; default: none, "
        "every request uses the daemon's store)",
    )
    p.add_argument(
        "--workers", type=int, default=4, metavar="N",
        help="operations run at once, each with a warm repository (default 4)",
    )
    p.add_argument(
        "--listen", metavar="tcp://ADDR:PORT",
        help="also serve on this TCP address, with mutual TLS (needs --tls-cert, "
        "--tls-key and --tls-client-ca)",
    )
    p.add_argument("--tls-cert", type=Path, metavar="PEM", help="--listen: the daemon's "
                   "certificate chain")
    p.add_argument("--tls-key", type=Path, metavar="PEM", help="--listen: its private key")
    p.add_argument(
        "--tls-client-ca", type=Path, metavar="PEM",
        help="--listen: the CA whose certificates clients must present",
    )
    p.add_argument("--json", action="store_true", help="status: print JSON")
    p.set_defaults(func=run)


def run(args: argparse.Namespace, ctx: Context) -> int:
    """Run the daemon until SIGTERM (exit 0), or print its status."""
    if args.action == "status":
        return _status(args)
    from cryostash.daemon.config import DaemonConfig
    from cryostash.daemon.tls import parse_listen

    config = DaemonConfig(
        socket=args.socket, group=args.group, allowed_dirs=tuple(args.allow_checkpoint_dir),
        engine=args.engine, workers=args.workers,
        tcp=parse_listen(args.listen, args.tls_cert, args.tls_key, args.tls_client_ca),
    )
    try:
        from cryostash.daemon.server import serve
    except ImportError as exc:
        from cryostash import UsageError

        raise UsageError(
            f"cryostash daemon needs the 'daemon' extra ({exc.name} is missing): "
            "pip install 'cryostash[daemon]'"
        ) from None
    return serve(ctx.settings, config, jobs=args.jobs)


def _status(args: argparse.Namespace) -> int:
    from cryostash.daemon import client

    found = client.status(args.socket)
    if args.json:
        print_json(found)
        return 0
    say(f"version:    {found.get('version')}")
    say(f"pid:        {found.get('pid')}")
    say(f"uptime:     {found.get('uptime_s')} s")
    say(f"in flight:  {found.get('in_flight')}")
    say(f"workers:    {found.get('workers')}")
    say(f"engine:     {found.get('engine') or '-'}")
    return 0
