"""``Inspection``: what ``cryostash inspect`` shows of one checkpoint (a plain value)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from cryostash.storage import Manifest
from cryostash.types import CheckpointInfo


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
