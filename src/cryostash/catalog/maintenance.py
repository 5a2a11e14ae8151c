"""Catalog operations for ``gc``, ``rm`` and ``catalog rebuild`` (beside :class:`Catalog`).

- :meth:`CatalogMaintenance.claim_unreferenced`: the one safe way to delete blobs
  from a store that other hosts are writing to (see its docstring).
- :meth:`CatalogMaintenance.insert_committed`: a COMMITTED row and its blob
  references in one transaction, for rebuilding a lost catalog from manifests.
- :meth:`CatalogMaintenance.blob_created_at`: when the catalog first recorded blobs
  (gc's fallback for the age of a blob when the store reports no time).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager
from datetime import datetime
from typing import Any

from sqlalchemy import delete, select
from sqlalchemy.exc import IntegrityError

from cryostash.catalog import refs
from cryostash.catalog.catalog import Catalog
from cryostash.catalog.database import is_unique_violation, translate_errors, translated
from cryostash.catalog.models import BlobRow, CheckpointBlobRow, CheckpointRow
from cryostash.catalog.rows import chunks, insert_ignore, to_info, unique_sorted, utcnow
from cryostash.types import CheckpointInfo, Status
from cryostash.urls import canonical_url


class CatalogMaintenance:
    """Maintenance operations on an open :class:`Catalog` (which stays the owner).

    Thread safety and transactions as for :class:`Catalog`: each method is one
    transaction.
    """

    def __init__(self, catalog: Catalog) -> None:
        self._catalog = catalog
        self._url = catalog._url

    @contextmanager
    def claim_unreferenced(self, store_url: str, digests: Iterable[str]) -> Iterator[set[str]]:
        """Lock ``digests`` against new references; yield those no row refers to.

        Use it as ``with m.claim_unreferenced(url, ds) as free: delete free from the
        store``. The body runs inside one write transaction that holds, for every
        digest, the lock on its ``blobs`` row (a placeholder row is inserted where
        there is none, and never committed). :meth:`Catalog.add_blob_refs` of the
        same digest by a concurrent create therefore waits until the block ends; it
        then finds no ``blobs`` row, reports the digest as fresh, and uploads the blob
        again. A reference committed before the lock was taken keeps the digest out
        of ``free``. So a blob is never deleted while a checkpoint (pending ones
        included) refers to it, and a create that refers to it afterwards restores it.

        When the block ends normally, the ``blobs`` rows of ``free`` are deleted and
        the transaction commits; on an exception it rolls back. Keep the body short
        (other writers wait): a few hundred digests per call.
        """
        store = canonical_url(store_url)
        wanted = unique_sorted(digests)
        with translate_errors(self._url), self._catalog._tx(write=True) as session:
            now = utcnow()
            for part in chunks(wanted):
                rows = [
                    {"store_url": store, "digest": d, "size": 0, "created_at": now} for d in part
                ]
                insert_ignore(session, BlobRow, rows, ("store_url", "digest"))
                session.execute(
                    select(BlobRow.digest)
                    .where(BlobRow.store_url == store, BlobRow.digest.in_(part))
                    .order_by(BlobRow.digest)
                    .with_for_update()
                ).all()
            referenced: set[str] = set()
            for part in chunks(wanted):
                referenced.update(
                    session.scalars(
                        select(CheckpointBlobRow.digest)
                        .join(CheckpointRow, CheckpointRow.id == CheckpointBlobRow.checkpoint_id)
                        .where(CheckpointRow.store_url == store, CheckpointBlobRow.digest.in_(part))
                    )
                )
            free = {d for d in wanted if d not in referenced}
            yield free
            for part in chunks(sorted(free)):
                session.execute(
                    delete(BlobRow).where(BlobRow.store_url == store, BlobRow.digest.in_(part))
                )

    @translated
    def insert_committed(
        self,
        *,
        store_url: str,
        target: str,
        name: str,
        host: str,
        engine: str,
        engine_version: str | None,
        created_at: datetime,
        size_bytes: int,
        labels: Mapping[str, str],
        stats: Mapping[str, Any],
        manifest_digest: str,
        blobs: Mapping[str, int],
    ) -> CheckpointInfo | None:
        """Insert a COMMITTED row (``committed_at`` = now) and its blob references.

        Returns None, changing nothing, when ``(store_url, target, name)`` has a row.
        """
        now = utcnow()
        row = CheckpointRow(
            store_url=canonical_url(store_url),
            target=target,
            name=name,
            status=Status.COMMITTED.value,
            host=host,
            engine=engine,
            engine_version=engine_version,
            created_at=created_at,
            committed_at=now,
            lease_expires_at=None,
            size_bytes=size_bytes,
            labels=dict(labels),
            stats=dict(stats),
            manifest_digest=manifest_digest,
        )
        try:
            with self._catalog._tx(write=True) as session:
                session.add(row)
                session.flush()
                refs.add_refs(session, row.id, dict(blobs))
                info = to_info(row)
        except IntegrityError as exc:
            if is_unique_violation(exc):
                return None
            raise
        return info

    @translated
    def blob_created_at(self, store_url: str, digests: Iterable[str]) -> dict[str, datetime]:
        """When the catalog recorded each of ``digests`` in that store (those it knows)."""
        store = canonical_url(store_url)
        found: dict[str, datetime] = {}
        with self._catalog._tx(write=False) as session:
            for part in chunks(unique_sorted(digests)):
                query = select(BlobRow.digest, BlobRow.created_at).where(
                    BlobRow.store_url == store, BlobRow.digest.in_(part)
                )
                found.update({d: t for d, t in session.execute(query)})
        return found
