"""``rm``: remove a checkpoint and the blobs only it used."""

from __future__ import annotations

from dataclasses import dataclass

from cryostash.errors import CheckpointNotFound, InvalidName
from cryostash.repository import Repository
from cryostash.repository.cleanup import remove_checkpoint
from cryostash.urls import sqlite_file


@dataclass(frozen=True)
class RmRequest:
    """The checkpoint to remove, from the store ``checkpoint_dir`` (default: the default)."""

    target: str
    name: str
    checkpoint_dir: str | None = None


@dataclass(frozen=True)
class Removed:
    """What :func:`rm` removed: the checkpoint, and the digests of the blobs deleted."""

    target: str
    name: str
    blobs_deleted: tuple[str, ...]


def rm(repo: Repository, request: RmRequest) -> Removed:
    """Remove the committed checkpoint: its catalog row, its manifest and every blob no
    other checkpoint (committed or pending) refers to
    (:func:`cryostash.repository.cleanup.remove_checkpoint`).

    The catalog row goes first (readers stop seeing it at once); a crash after that
    leaves objects that ``gc`` removes.

    A row whose target or name no longer passes the name rule (written by an older
    version or another tool; ``verify`` reports it) is removed too, with the blobs only
    it used; no store path is made of its name, so its manifest is left to ``gc``.

    Raises:
        InvalidName: bad target or name, and no catalog row has them.
        CheckpointNotFound: no such committed checkpoint.
    """
    try:
        info = repo.checkpoint(request.target, request.name, request.checkpoint_dir)
    except InvalidName as invalid:
        if not _catalog_may_hold_it(repo):
            raise invalid from None
        url = repo.store(request.checkpoint_dir).url
        try:
            info = repo.catalog.get(url, request.target, request.name)
        except CheckpointNotFound:
            raise invalid from None
    deleted = remove_checkpoint(repo, info, request.checkpoint_dir)
    return Removed(request.target, request.name, tuple(deleted))


def _catalog_may_hold_it(repo: Repository) -> bool:
    """Whether a catalog exists that may hold a row under an invalid name: a SQLite file
    that is there, or a server catalog. A missing SQLite file is not created to find out."""
    path = sqlite_file(repo.settings.catalog_url)
    return path is None or path.expanduser().is_file()
