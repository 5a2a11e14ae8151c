"""``Inspection``: what ``cryostash inspect`` shows of one checkpoint (a plain value), and
:func:`verified_manifest`, the manifest of a catalog row as every reader of it loads it."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from cryostash.errors import CheckpointNotFound, IntegrityError
from cryostash.store import Manifest, ManifestMismatch, Store
from cryostash.store.manifest import load_manifest
from cryostash.types import CheckpointInfo


def verified_manifest(store: Store, info: CheckpointInfo) -> Manifest:
    """The manifest of ``info``, checked against the catalog's digest (bytes that are
    neither valid nor the recorded ones are reported as not matching the catalog).

    Raises:
        CheckpointNotFound / StorageError: the manifest cannot be read.
        ManifestMismatch: valid bytes whose digest is not the recorded one.
        IntegrityError: anything else wrong with it.
    """
    t, n, expected = info.target, info.name, info.manifest_digest
    data = store.manifests.read(t, n)
    digest_of = store.sealing.manifest_digest  # keyed on an encrypted store
    try:
        loaded = load_manifest(data, target=t, name=n, expected=expected, digest_of=digest_of)
        return loaded.manifest
    except ManifestMismatch:
        raise
    except IntegrityError:
        actual = digest_of(data)
        if not expected or actual == expected:
            raise
        raise IntegrityError(
            f"manifest of {t}/{n} does not match the catalog "
            f"(expected BLAKE3 {expected}, got {actual})"
        ) from None


@dataclass(frozen=True)
class Inspection:
    """What ``inspect`` shows: the catalog row and the manifest it points to."""

    info: CheckpointInfo
    manifest: Manifest

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready view (``inspect --json``)."""
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


#: The engine's log of the dump, as the image folder holds it (CRIU, runc).
DUMP_LOG = "dump.log"


def stored_file(store: Store, manifest: Manifest, path: str = DUMP_LOG) -> bytes:
    """The bytes of the file ``path`` of a checkpoint (``inspect --log``: the dump's log),
    each chunk fetched and verified.

    Raises:
        CheckpointNotFound: the checkpoint has no such file (``checkpoint NAME of container
            TARGET has no dump.log (engine ENGINE)``).
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
