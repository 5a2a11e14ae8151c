"""``events``: the event log (what was done, where, when), oldest first."""

from __future__ import annotations

from dataclasses import dataclass

from cryostash.names import validate_target
from cryostash.repository import Repository
from cryostash.types import Event


@dataclass(frozen=True)
class EventsRequest:
    """Only the events of ``target`` (default: all); only the last ``limit`` (default: all)."""

    target: str | None = None
    limit: int | None = None


def events(repo: Repository, request: EventsRequest) -> tuple[Event, ...]:
    """The event log, oldest first.

    Raises:
        InvalidName: bad target.
    """
    if request.target is not None:
        validate_target(request.target)
    return tuple(repo.reader.events(request.target, request.limit))
