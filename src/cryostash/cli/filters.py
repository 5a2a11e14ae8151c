"""The checkpoint filter flags (``--label``, ``--host``, ``--since``) and ``NAME | --latest``.

- :func:`add_filter_flags` / :func:`filters`: ``ls``, and every verb taking ``--latest``.
  The flags' destinations are ``filter_*``: ``--host`` after the verb filters by the host
  that created a checkpoint, while the global ``--host`` (before the verb) names this host.
- :func:`add_selection` / :func:`selected_name`: ``inspect``, ``restore``, ``prefetch``
  take ``TARGET (NAME | --latest) [filters]``; exactly one of NAME and ``--latest``, and
  the filters only with ``--latest`` (a usage error otherwise, exit 2).
- :func:`parse_since`: an ISO-8601 time (naive means UTC) or a duration back from now
  (``10m``, ``1h30m``, ``7d``: :func:`cryostash.units.parse_duration` with a unit; a
  plain number is read as an ISO-8601 time).
"""

from __future__ import annotations

import argparse
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING

from cryostash.cli.context import parse_labels
from cryostash.errors import UsageError
from cryostash.units import parse_duration

if TYPE_CHECKING:
    from cryostash.cli.context import Context
    from cryostash.types import CheckpointFilter


def add_filter_flags(p: argparse.ArgumentParser) -> None:
    """``--label KEY=VALUE`` (repeatable), ``--host NAME``, ``--since WHEN``."""
    p.add_argument(
        "--label",
        dest="filter_labels",
        action="append",
        metavar="KEY=VALUE",
        help="only checkpoints with this label (repeatable: all must match)",
    )
    p.add_argument(
        "--host", dest="filter_host", metavar="NAME", help="only checkpoints created on this host"
    )
    p.add_argument(
        "--since",
        dest="filter_since",
        metavar="WHEN",
        help="only checkpoints created at or after WHEN: an ISO-8601 time (UTC unless it "
        "has an offset) or a duration back from now (10m, 1h30m, 7d)",
    )


def parse_since(text: str, now: datetime | None = None) -> datetime:
    """WHEN of ``--since`` as a tz-aware time (see the module docstring).

    Raises:
        UsageError: ``invalid --since 'X': expected ...``.
    """
    value = text.strip()
    seconds = _duration(value)
    if seconds is not None:
        try:
            return (now or datetime.now(UTC)) - timedelta(seconds=seconds)
        except OverflowError:
            pass
    else:
        try:
            when = datetime.fromisoformat(value)
        except ValueError:
            pass
        else:
            try:
                return when.replace(tzinfo=UTC) if when.tzinfo is None else when.astimezone(UTC)
            except OverflowError:  # 0001-01-01T00:00:00+14:00 is before year 1 in UTC
                pass
    raise UsageError(
        f"invalid --since {text!r}: expected an ISO-8601 time (2026-11-28T21:40:00, "
        "UTC unless it ends with an offset such as +02:00 or Z) or a duration back from "
        "now (30s, 10m, 1h30m, 7d, 2w)"
    )


def _duration(value: str) -> float | None:
    """Seconds of a duration with a unit (:func:`cryostash.units.parse_duration`), or None:
    a plain number is not a duration here (``20261128`` is an ISO-8601 date)."""
    if not value[-1:].isalpha():
        return None
    try:
        return parse_duration(value)
    except UsageError:
        return None


def filters(args: argparse.Namespace) -> CheckpointFilter:
    """The filter the flags of :func:`add_filter_flags` describe (empty if none).

    Raises:
        UsageError: a malformed ``--label`` or ``--since`` (the value is named), a control
            character in ``--label`` or ``--host`` (exit 2, as at create).
    """
    from cryostash.names import validate_host, validate_labels
    from cryostash.types import CheckpointFilter

    since = args.filter_since
    host = args.filter_host
    return CheckpointFilter(
        labels=validate_labels(parse_labels(args.filter_labels)),
        host=validate_host(host) if host is not None else None,
        since=parse_since(since) if since is not None else None,
    )


def add_selection(p: argparse.ArgumentParser) -> None:
    """``TARGET [NAME] [--latest] [--label ...] [--host ...] [--since ...]``."""
    p.add_argument("target", metavar="TARGET")
    p.add_argument("name", metavar="NAME", nargs="?", help="the checkpoint (or --latest)")
    p.add_argument(
        "--latest",
        action="store_true",
        help="the newest committed checkpoint of TARGET (matching the filters)",
    )
    add_filter_flags(p)


def selected_name(args: argparse.Namespace, ctx: Context) -> str:
    """NAME, or with ``--latest`` the name of the newest matching checkpoint.

    Raises:
        UsageError: both or neither of NAME and ``--latest``; filters without ``--latest``.
        InvalidName: a bad TARGET.
        CheckpointNotFound: ``--latest`` and nothing matches.
    """
    if args.latest and args.name is not None:
        raise UsageError(f"give either NAME ({args.name}) or --latest, not both")
    if not args.latest:
        if args.name is None:
            raise UsageError("give the checkpoint's NAME, or --latest for the newest")
        if args.filter_labels or args.filter_host is not None or args.filter_since is not None:
            raise UsageError("--label, --host and --since choose a checkpoint with --latest")
        return str(args.name)
    from cryostash.operations.ls import Listing, LsRequest, ls

    request = LsRequest(args.target, args.checkpoint_dir, filters(args), latest=True)
    return ctx.call("ls", ls, request, Listing).rows[0].info.name
