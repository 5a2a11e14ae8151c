"""Where a verb runs: in this process, or on a cryostash daemon (the command line as a
thin client, docs/daemon.md "The command line as a client").

:func:`choose` decides once per command, on the first operation the verb calls
(:meth:`cryostash.cli.context.Context.call`):

1. ``--no-daemon``: in this process.
2. ``--daemon unix:///PATH`` or ``$CRYOSTASH_DAEMON``: that daemon. It must answer, be of
   this version and serve what this command resolved (:func:`differences`); otherwise
   :class:`~cryostash.errors.DaemonError` (exit 13) naming it. Nothing runs in process.
3. Otherwise the default socket (``/run/cryostash/cryostash.sock``) when a daemon of this
   version answers there and serves exactly what this command resolved (the same store,
   catalog, scratch folder and host: the daemon's ``/v1/status`` ``serves``); any doubt
   (no socket, no answer within 2 s, another version, other settings, a
   ``--checkpoint-dir`` the daemon was not started with): in this process, silently, so
   that a daemon started with other settings never changes what a command does.

Only the verbs of :data:`CLIENT_VERBS` call through the daemon (``restore --lazy``
aside: its helper is this command's); every other one (the streams of ``import``,
``export``, ``migrate``; ``store``, ``key``, ``db``, ``catalog``, ``doctor``, ``daemon``,
``completion``, and those not routed yet) runs in this process whatever the options say.
This path imports the standard library only (no SQLAlchemy, fsspec, botocore, aiohttp).
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

from cryostash.errors import DaemonError, UsageError

if TYPE_CHECKING:
    from cryostash.config import Settings

#: The environment variable naming a daemon (as ``--daemon`` does).
ENV = "CRYOSTASH_DAEMON"
#: The verbs whose command calls its operation through the daemon when one is chosen.
CLIENT_VERBS = frozenset({"create", "restore", "rm", "ls", "inspect", "events"})
#: How long the default socket may take to answer ``/v1/status`` before the command runs
#: in process.
PROBE_TIMEOUT_S = 2.0


def choose(args: argparse.Namespace, settings: Settings) -> Path | None:
    """The daemon's socket this command's operations go to, or None: in this process.

    Raises:
        UsageError: ``--daemon`` with ``--no-daemon``, or a URL that is not ``unix://``.
        DaemonError: the daemon named by ``--daemon``/``$CRYOSTASH_DAEMON`` does not
            answer, is of another version, or serves other settings.
    """
    given = getattr(args, "daemon", None)
    if getattr(args, "no_daemon", False):
        if given:
            raise UsageError("--daemon and --no-daemon exclude each other")
        return None
    if args.verb not in CLIENT_VERBS or getattr(args, "lazy", False):
        return None
    from cryostash.daemon import client
    from cryostash.daemon.config import DEFAULT_SOCKET

    named = given or os.environ.get(ENV) or None
    if named is not None:
        where = "--daemon" if given else f"${ENV}"
        socket = socket_path(named, where)
        try:
            found = client.status(socket)
        except DaemonError as exc:
            raise DaemonError(f"{where} {named}: {exc} (or --no-daemon)") from None
        unlike = differences(found, settings)
        if unlike:
            raise DaemonError(
                f"{where} {named}: the daemon serves {unlike}: give this command the "
                "daemon's settings, or run it with --no-daemon"
            )
        return socket
    try:
        if not DEFAULT_SOCKET.is_socket():
            return None
        found = client.status(DEFAULT_SOCKET, timeout=PROBE_TIMEOUT_S)
    except (OSError, DaemonError):
        return None
    checkpoint_dir = getattr(args, "checkpoint_dir", None)
    if checkpoint_dir is not None and not allows(found, checkpoint_dir):
        return None
    return None if differences(found, settings) else DEFAULT_SOCKET


def allows(status: dict[str, Any], checkpoint_dir: str) -> bool:
    """Whether the daemon of ``status`` serves ``checkpoint_dir`` (``--allow-checkpoint-dir``)."""
    from cryostash.daemon.config import shown_dir

    allowed = status.get("allowed_dirs")
    return isinstance(allowed, list) and shown_dir(checkpoint_dir) in allowed


def socket_path(url: str, where: str = "--daemon") -> Path:
    """The socket of ``unix:///PATH`` (or a plain absolute PATH).

    Raises:
        UsageError: another scheme (TCP is not served yet), or no path.
    """
    path = url.removeprefix("unix://")
    if "://" in path or not path:
        raise UsageError(f"{where} {url}: expected unix:///PATH (the daemon's socket)")
    return Path(path)


def differences(status: dict[str, Any], settings: Settings) -> str:
    """What the daemon of ``status`` serves unlike ``settings`` (``store X (this command:
    Y), ...``), or ``""`` when it serves exactly what this command resolved."""
    from cryostash.daemon.config import serves

    theirs = status.get("serves")
    if not isinstance(theirs, dict):
        return "settings it does not report"
    ours = serves(settings)
    return ", ".join(
        f"{key} {theirs.get(key)} (this command: {value})"
        for key, value in ours.items()
        if theirs.get(key) != value
    )
