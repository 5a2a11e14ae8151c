"""Blob references: which checkpoint uses which blob, and when a blob is unreferenced.

Guarantee (SQLite file shared by processes, or PostgreSQL shared by hosts):
:func:`delete_checkpoint` (``Catalog.remove`` / ``Catalog.abort``) and
:func:`add_refs` (``Catalog.add_blob_refs``) on the same digest are serialised.

- The remover locks the ``blobs`` rows of the checkpoint's digests
  (``SELECT ... FOR UPDATE``, in digest order) before it looks for remaining
  references, and deletes the rows of the digests nobody references any more.
- ``add_refs`` share-locks the same rows (``FOR SHARE``, in digest order) before it
  inserts its references; a row that a concurrent remover deleted meanwhile is
  inserted again and its digest reported in the result ("not recorded before").

So a digest is returned as unreferenced only if no reference to it existed when the
removal committed; an ``add_refs`` that committed first makes the remover keep the
digest, one that comes later re-creates the ``blobs`` row and tells its caller to
make sure the blob is uploaded. On SQLite every write transaction is ``BEGIN
IMMEDIATE`` (writers serialised), which gives the same guarantee without row locks.

What the catalog cannot guarantee is the store side: whoever deletes the objects of
returned digests must do it after a grace period (``gc``), re-checking
``Catalog.known_blobs`` / ``Catalog.referenced_digests`` just before.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence

from sqlalchemy import delete, select
from sqlalchemy.orm import Session

from cryostash.catalog.models import BlobRow, CheckpointBlobRow, CheckpointRow
from cryostash.catalog.rows import chunks, insert_ignore, unique_sorted, utcnow
from cryostash.errors import CatalogError
from cryostash.types import Status

#: How often ``add_refs`` re-locks rows that concurrent removers keep deleting.
_LOCK_ATTEMPTS = 20


def delete_checkpoint(
    session: Session, checkpoint_id: int, *, pending_only: bool
) -> list[str] | None:
    """Delete a checkpoint row and its references; None if there is no such row.

    Returns the digests (sorted) now referenced by no row of the checkpoint's store,
    whose ``blobs`` rows are deleted in the same transaction.

    Raises:
        CatalogError: ``pending_only`` and the row is committed.
    """
    row = session.get(CheckpointRow, checkpoint_id, with_for_update=True)
    if row is None:
        return None
    if pending_only and row.status != Status.PENDING.value:
        raise CatalogError(
            f"checkpoint {row.name} of container {row.target} is committed, not pending"
        )
    store = row.store_url
    digests = unique_sorted(
        session.scalars(
            select(CheckpointBlobRow.digest).where(CheckpointBlobRow.checkpoint_id == checkpoint_id)
        )
    )
    for part in chunks(digests):  # lock in digest order: no deadlock with add_refs
        session.execute(
            select(BlobRow.digest)
            .where(BlobRow.store_url == store, BlobRow.digest.in_(part))
            .order_by(BlobRow.digest)
            .with_for_update()
        ).all()
    session.execute(
        delete(CheckpointBlobRow).where(CheckpointBlobRow.checkpoint_id == checkpoint_id)
    )
    session.execute(delete(CheckpointRow).where(CheckpointRow.id == checkpoint_id))
    still: set[str] = set()
    for part in chunks(digests):
        still.update(
            session.scalars(
                select(CheckpointBlobRow.digest)
                .join(CheckpointRow, CheckpointRow.id == CheckpointBlobRow.checkpoint_id)
                .where(CheckpointRow.store_url == store, CheckpointBlobRow.digest.in_(part))
            )
        )
    orphans = [d for d in digests if d not in still]
    for part in chunks(orphans):
        session.execute(delete(BlobRow).where(BlobRow.store_url == store, BlobRow.digest.in_(part)))
    return orphans


def add_refs(session: Session, checkpoint_id: int, sizes: Mapping[str, int]) -> set[str] | None:
    """Upsert the ``blobs`` rows and insert the references; None if no such checkpoint.

    Returns the digests that no COMMITTED checkpoint of the store references (those that
    had no ``blobs`` row before this call among them): the caller must make sure they
    are in the store. A digest that only PENDING checkpoints reference is not trusted:
    their creator may still be uploading it, or may fail and never do.
    """
    store = session.scalars(
        select(CheckpointRow.store_url)
        .where(CheckpointRow.id == checkpoint_id)
        .with_for_update(key_share=True)
    ).one_or_none()
    if store is None:
        return None
    digests = unique_sorted(sizes)
    fresh: set[str] = set()
    for part in chunks(digests):
        fresh |= _lock_or_insert_blobs(session, store, part, sizes)
    insert_ignore(
        session,
        CheckpointBlobRow,
        [{"checkpoint_id": checkpoint_id, "digest": d} for d in digests],
        ("checkpoint_id", "digest"),
    )
    trusted: set[str] = set()
    for part in chunks(digests):
        trusted.update(
            session.scalars(
                select(CheckpointBlobRow.digest)
                .join(CheckpointRow, CheckpointRow.id == CheckpointBlobRow.checkpoint_id)
                .where(
                    CheckpointRow.store_url == store,
                    CheckpointRow.status == Status.COMMITTED.value,
                    CheckpointBlobRow.digest.in_(part),
                )
                .distinct()
            )
        )
    return fresh | (set(digests) - trusted)


def _lock_or_insert_blobs(
    session: Session, store: str, digests: Sequence[str], sizes: Mapping[str, int]
) -> set[str]:
    """Share-lock the ``blobs`` rows of ``digests``, inserting the missing ones."""
    locked: set[str] = set()
    fresh: set[str] = set()
    for _attempt in range(_LOCK_ATTEMPTS):
        missing = [d for d in digests if d not in locked]
        if not missing:
            return fresh
        locked.update(
            session.scalars(
                select(BlobRow.digest)
                .where(BlobRow.store_url == store, BlobRow.digest.in_(missing))
                .order_by(BlobRow.digest)
                .with_for_update(read=True)
            )
        )
        absent = [d for d in missing if d not in locked]
        fresh.update(absent)
        now = utcnow()
        rows = [
            {"store_url": store, "digest": d, "size": sizes[d], "created_at": now} for d in absent
        ]
        insert_ignore(session, BlobRow, rows, ("store_url", "digest"))
    raise CatalogError("could not lock the blob rows (too much contention); try again")


def known(session: Session, store: str, digests: Iterable[str]) -> set[str]:
    """Which of ``digests`` have a ``blobs`` row in ``store``."""
    found: set[str] = set()
    for part in chunks(unique_sorted(digests)):
        found.update(
            session.scalars(
                select(BlobRow.digest).where(BlobRow.store_url == store, BlobRow.digest.in_(part))
            )
        )
    return found


def referenced(session: Session, store: str) -> set[str]:
    """Every digest referenced by a row (pending included) of ``store``."""
    query = (
        select(CheckpointBlobRow.digest)
        .join(CheckpointRow, CheckpointRow.id == CheckpointBlobRow.checkpoint_id)
        .where(CheckpointRow.store_url == store)
        .distinct()
    )
    return set(session.scalars(query))
