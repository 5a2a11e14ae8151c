"""``ls``: the checkpoints of a store, those matching every filter.

Committed checkpoints by default (the common case, kept fast: ``names_only`` reads only
the names). ``show`` ``all`` adds the reservations of creates in progress or abandoned,
``pending`` lists only those; each row then carries its state (``committed``,
``pending``: its creator is alive or may be, ``abandoned``: dead or past its lease, the
next create or gc undoes it: :func:`cryostash.repository.reservations.state`).
``latest``: only the newest committed checkpoint of the target that matches (``--latest``
of ``restore``, ``inspect``, ``prefetch``, ``export``).
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

from cryostash.errors import UsageError
from cryostash.names import validate_target
from cryostash.repository import Repository
from cryostash.types import CheckpointFilter, CheckpointInfo


class Show(enum.StrEnum):
    """Which rows ``ls`` lists."""

    COMMITTED = "committed"
    ALL = "all"  #: committed ones and reservations
    PENDING = "pending"  #: reservations only


@dataclass(frozen=True)
class LsRequest:
    """What to list.

    Attributes:
        target: only this target (default: every target).
        checkpoint_dir: the store, when not the default one.
        filters: labels, creating host, created since (all must match).
        show: committed checkpoints, reservations, or both.
        names_only: committed checkpoints: fill only ``Listing.names`` (fast).
        latest: only the newest committed checkpoint of ``target`` that matches.
    """

    target: str | None = None
    checkpoint_dir: str | None = None
    filters: CheckpointFilter | None = None
    show: Show = Show.COMMITTED
    names_only: bool = False
    latest: bool = False


@dataclass(frozen=True)
class Listed:
    """One row: the checkpoint, and its state (``committed``, ``pending``, ``abandoned``)."""

    info: CheckpointInfo
    state: str = "committed"


@dataclass(frozen=True)
class Listing:
    """What :func:`ls` found, sorted by target then name: ``rows``, or with
    ``names_only`` the ``(target, name)`` pairs in ``names``."""

    rows: tuple[Listed, ...] = ()
    names: tuple[tuple[str, str], ...] = ()

    @property
    def checkpoints(self) -> tuple[CheckpointInfo, ...]:
        """The rows' checkpoints."""
        return tuple(row.info for row in self.rows)


def ls(repo: Repository, request: LsRequest) -> Listing:
    """List the checkpoints ``request`` asks for (see the module docstring).

    Raises:
        InvalidName: bad target.
        UsageError: ``latest`` without a target.
        CheckpointNotFound: ``latest`` and nothing matches (``no checkpoint of container
            TARGET matches (...)``).
    """
    target, chosen = request.target, request.filters
    if target is not None:
        validate_target(target)
    if request.latest:
        if target is None:
            raise UsageError("the latest checkpoint of which target?")
        return Listing((Listed(repo.latest(target, chosen, request.checkpoint_dir)),))
    url = repo.store(request.checkpoint_dir).url
    if request.show is Show.COMMITTED:
        if request.names_only:
            return Listing(names=tuple(repo.reader.names(url, target, chosen)))
        return Listing(tuple(Listed(i) for i in repo.reader.list(url, target, chosen)))
    from cryostash.repository import reservations  # only --all/--pending need it

    committed = [] if request.show is Show.PENDING else repo.reader.list(url, target, chosen)
    pending = [i for i in repo.catalog.pending(url) if _matches(i, target, chosen)]
    infos = sorted([*committed, *pending], key=lambda i: (i.target, i.name, i.id))
    return Listing(tuple(Listed(i, reservations.state(i, repo.host)) for i in infos))


def _matches(info: CheckpointInfo, target: str | None, chosen: CheckpointFilter | None) -> bool:
    """Whether a reservation matches the target and the filters."""
    if target is not None and info.target != target:
        return False
    if chosen is None:
        return True
    return (
        (chosen.host is None or info.host == chosen.host)
        and (chosen.since is None or info.created_at >= chosen.since)
        and all(info.labels.get(k) == v for k, v in chosen.labels.items())
    )
