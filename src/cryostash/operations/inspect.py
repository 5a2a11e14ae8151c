"""``inspect``: one checkpoint's catalog row and verified manifest (:class:`Inspection`),
with, if asked, its last restore (``history``) or the bytes of its dump's log (``log``).
What its CRIU images hold (``inspect --tree/--files/--memory``): :mod:`.inspect_contents`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from cryostash.errors import CheckpointNotFound
from cryostash.repository import Repository
from cryostash.store import Manifest, Store
from cryostash.types import CheckpointInfo, Event

#: The engine's log of the dump, as the image folder holds it (CRIU, runc).
DUMP_LOG = "dump.log"


@dataclass(frozen=True)
class InspectRequest:
    """The checkpoint to inspect, and what to add.

    Attributes:
        target, name: the checkpoint.
        checkpoint_dir: the store holding it, when not the default one.
        history: add its last restore from this store (``Inspection.last_restore``).
        log: add the bytes of its dump's log (``Inspection.log``, ``inspect --log``).
    """

    target: str
    name: str
    checkpoint_dir: str | None = None
    history: bool = False
    log: bool = False


@dataclass(frozen=True)
class Inspection:
    """What ``inspect`` shows: the catalog row and the manifest it points to; with
    ``history``, its last ``restore`` event (None: never restored, or not asked); with
    ``log``, the dump's log."""

    info: CheckpointInfo
    manifest: Manifest
    last_restore: Event | None = None
    log: bytes | None = None

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready view (``inspect --json``; the log aside)."""
        out = self.info.summary()
        out.update(
            {
                "store": self.info.store_url,
                "engine_version": self.info.engine_version,
                "committed_at": (
                    self.info.committed_at.isoformat() if self.info.committed_at else None
                ),
                "kernel": self.manifest.kernel,
                "root_pid": self.manifest.root_pid,
                "parent": self.manifest.parent,
                "stats": dict(self.info.stats),
                "files": [
                    {"path": f.path, "mode": f.mode, "size": f.size, "digest": f.digest}
                    for f in self.manifest.files
                ],
            }
        )
        return out


def inspect(repo: Repository, request: InspectRequest) -> Inspection:
    """The catalog row and the verified manifest of the checkpoint, and what the request
    adds (see :class:`InspectRequest`).

    Raises:
        InvalidName / CheckpointNotFound: no such checkpoint.
        IntegrityError / StorageError: the manifest (or, with ``log``, a chunk of the log)
            is missing or corrupt, or cannot be read.
        CheckpointNotFound: with ``log``, the checkpoint has no ``dump.log``
            (``checkpoint NAME of container TARGET has no dump.log (engine ENGINE)``).
    """
    info = repo.checkpoint(request.target, request.name, request.checkpoint_dir)
    store = repo.store(request.checkpoint_dir)
    manifest = repo.manifest(store, info)
    log = stored_file(store, manifest) if request.log else None
    last = None
    if request.history:
        restores = [
            e for e in repo.reader.events(request.target, None)
            if e.action == "restore" and e.name == request.name and e.store_url == info.store_url
        ]
        last = restores[-1] if restores else None
    return Inspection(info, manifest, last, log)


def stored_file(store: Store, manifest: Manifest, path: str = DUMP_LOG) -> bytes:
    """The bytes of the file ``path`` of a checkpoint, each chunk fetched and verified.

    Raises:
        CheckpointNotFound: the checkpoint has no such file.
        IntegrityError / StorageError: a chunk is missing or corrupt, or cannot be read.
    """
    for entry in manifest.files:
        if entry.path == path:
            sizes = entry.chunk_sizes or (entry.size,)
            return b"".join(
                store.chunks.read(digest, size)
                for digest, size in zip(entry.blobs, sizes, strict=True)
            )
    raise CheckpointNotFound(
        f"checkpoint {manifest.name} of container {manifest.target} has no {path} "
        f"(engine {manifest.engine})"
    )
