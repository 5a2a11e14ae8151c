"""``catalog rebuild``: recreate the catalog rows of a store from its manifests alone.

For disaster recovery when the catalog database is lost (or to adopt a store that
another catalog wrote): the store is self-describing. :func:`rebuild` reads
every manifest of one store and, for each checkpoint the catalog does not know,
inserts a COMMITTED row with everything the manifest records (host, engine and
version, created_at, labels, stats, size, the manifest's BLAKE3 digest) and its blob
references. ``committed_at`` is the time of the rebuild. An event ``rebuild`` is
recorded for each.

A checkpoint is imported only if it can be restored as far as a listing tells: its
manifest is valid and every blob it names is stored with a plausible size (run
``verify --read-data`` to read every byte). Others are reported as ``skipped`` with
the reason, and left alone in the store. Checkpoints the catalog already knows are
``present`` (same manifest digest) or ``skipped`` (different manifest, or still
pending: ``gc`` decides those). Running it again imports nothing new: idempotent.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from cryostash.catalog.maintenance import CatalogMaintenance
from cryostash.errors import CheckpointNotFound, IntegrityError
from cryostash.operations.verify import presence_problem
from cryostash.repository import Repository
from cryostash.store import Store, StoredManifest
from cryostash.transfer.progress import counted


@dataclass(frozen=True)
class RebuildRequest:
    """The store to rebuild from (default: the repository's default store)."""

    checkpoint_dir: str | None = None


@dataclass(frozen=True)
class RebuildReport:
    """What :func:`rebuild` did; ``ok`` when nothing was skipped."""

    store_url: str
    imported: tuple[str, ...]
    present: tuple[str, ...]
    skipped: tuple[tuple[str, str], ...]  #: (target/name, reason)

    @property
    def ok(self) -> bool:
        """True when every manifest of the store is now in the catalog."""
        return not self.skipped

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready form (``catalog rebuild --json``)."""
        return {
            "store": self.store_url,
            "ok": self.ok,
            "imported": list(self.imported),
            "present": list(self.present),
            "skipped": [{"checkpoint": c, "reason": r} for c, r in self.skipped],
        }


def rebuild(repo: Repository, request: RebuildRequest) -> RebuildReport:
    """Import every restorable checkpoint of a store that the catalog lacks.

    Raises:
        StorageError / CatalogError: the store could not be listed, or the catalog failed.
    """
    store, catalog = repo.store(request.checkpoint_dir), repo.catalog
    store.unlock(restore=True)  # the key (KeyRequired, WrongKey, RestoreKeyRequired) first
    inv = store.maintenance.inventory()
    stored = {d: obj.size for d, obj in inv.blobs.items()}
    committed = {(i.target, i.name): i for i in catalog.list(store.url)}
    pending = {(i.target, i.name) for i in catalog.pending(store.url)}
    maintenance = CatalogMaintenance(catalog)
    imported: list[str] = []
    present: list[str] = []
    skipped: list[tuple[str, str]] = []
    with repo.tracking("rebuild") as callback:
        for (target, name) in counted(sorted(inv.manifests), callback):
            label = f"{target}/{name}"
            try:
                loaded = store.manifests.load(target, name)
            except CheckpointNotFound:
                continue  # removed meanwhile
            except IntegrityError as exc:
                skipped.append((label, str(exc)))
                continue
            manifest, digest = loaded.manifest, loaded.digest
            known = committed.get((target, name))
            if known is not None:
                if known.manifest_digest in (None, digest):
                    present.append(label)
                else:
                    skipped.append((label, "the catalog records a different manifest for it"))
                continue
            if (target, name) in pending:
                skipped.append((label, "it is being created (pending); `cryostash gc` settles it"))
                continue
            reason = presence_problem(manifest, stored, store.sealing.overhead)
            if reason is not None:
                skipped.append((label, f"cannot be restored: {reason}"))
                continue
            if adopt(repo, store, loaded, maintenance=maintenance):
                imported.append(label)
            else:
                present.append(label)  # inserted concurrently by someone else
    return RebuildReport(store.url, tuple(imported), tuple(present), tuple(skipped))


def adopt(
    repo: Repository,
    store: Store,
    loaded: StoredManifest,
    *,
    action: str = "rebuild",
    maintenance: CatalogMaintenance | None = None,
) -> bool:
    """Import the valid manifest ``loaded`` of ``store`` as a COMMITTED row (what its
    manifest records, ``created_at`` included, its digest and blob references) and record
    the event ``action``. The caller has checked that its blobs are present
    (:func:`~cryostash.operations.verify.presence_problem`). False, changing nothing,
    when the catalog has a row of that name (inserted meanwhile by someone else)."""
    manifest, digest = loaded.manifest, loaded.digest
    maintenance = maintenance or CatalogMaintenance(repo.catalog)
    info = maintenance.insert_committed(
        store_url=store.url,
        target=manifest.target,
        name=manifest.name,
        host=manifest.host,
        engine=manifest.engine,
        engine_version=manifest.engine_version,
        created_at=manifest.created_at,
        size_bytes=manifest.size,
        labels=manifest.labels,
        stats=manifest.stats,
        manifest_digest=digest,
        blobs=manifest.chunk_sizes,
    )
    if info is None:
        return False
    repo.catalog.record_event(
        host=repo.host,
        action=action,
        target=manifest.target,
        name=manifest.name,
        store_url=store.url,
        detail={"created_by": manifest.host, "manifest_digest": digest},
    )
    return True
