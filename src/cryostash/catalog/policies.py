"""Catalog operations for retention (beside :class:`Catalog`).

- The default retention policy of each target of a store (table ``retention_policies``,
  revision ``0002``): :meth:`RetentionCatalog.set_default`, :meth:`~RetentionCatalog.
  default`, :meth:`~RetentionCatalog.defaults`.
- :meth:`RetentionCatalog.exclusive_blobs`: the blobs only some checkpoints use, i.e.
  what removing them frees (for ``prune``'s report and its dry run).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError

from cryostash.catalog.catalog import Catalog
from cryostash.catalog.database import is_unique_violation, translated
from cryostash.catalog.models import (
    BlobRow,
    CheckpointBlobRow,
    CheckpointRow,
    RetentionPolicyRow,
)
from cryostash.catalog.rows import chunks, unique_sorted, utcnow
from cryostash.errors import CatalogError, UsageError
from cryostash.retention import Policy
from cryostash.urls import canonical_url


@dataclass(frozen=True)
class StoredPolicy:
    """A target's default retention policy, as the catalog records it."""

    store_url: str
    target: str
    policy: Policy
    updated_at: datetime
    host: str  #: the host that set it last


def _to_stored(row: RetentionPolicyRow) -> StoredPolicy:
    try:
        policy = Policy.from_dict(row.policy)
    except UsageError as exc:
        raise CatalogError(
            f"the default retention policy of container {row.target} in the catalog is "
            f"invalid ({exc}); set it again with `cryostash create ... --keep-last N`"
        ) from None
    return StoredPolicy(row.store_url, row.target, policy, row.updated_at, row.host)


class RetentionCatalog:
    """Retention operations on an open :class:`Catalog` (which stays the owner).

    Each method is one transaction, as for :class:`Catalog`.
    """

    def __init__(self, catalog: Catalog) -> None:
        self._catalog = catalog
        self._url = catalog._url

    @translated
    def set_default(
        self, *, store_url: str, target: str, policy: Policy, host: str
    ) -> StoredPolicy:
        """Make ``policy`` the default of ``target`` in that store (replacing any)."""
        store = canonical_url(store_url)
        for attempt in (1, 2):  # two hosts inserting the first default at once: one wins
            try:
                with self._catalog._tx(write=True) as session:
                    row = session.get(
                        RetentionPolicyRow, (store, target), with_for_update=True
                    )
                    if row is None:
                        row = RetentionPolicyRow(store_url=store, target=target)
                        session.add(row)
                    row.policy = policy.to_dict()
                    row.updated_at = utcnow()
                    row.host = host
                    session.flush()
                    return _to_stored(row)
            except IntegrityError as exc:
                if attempt == 2 or not is_unique_violation(exc):
                    raise
        raise AssertionError("unreachable")

    @translated
    def default(self, store_url: str, target: str) -> StoredPolicy | None:
        """The default policy of ``target`` in that store, or None."""
        with self._catalog._tx(write=False) as session:
            row = session.get(RetentionPolicyRow, (canonical_url(store_url), target))
            return _to_stored(row) if row is not None else None

    @translated
    def defaults(self, store_url: str) -> dict[str, StoredPolicy]:
        """Every default policy of that store, by target."""
        query = select(RetentionPolicyRow).where(
            RetentionPolicyRow.store_url == canonical_url(store_url)
        )
        with self._catalog._tx(write=False) as session:
            return {row.target: _to_stored(row) for row in session.scalars(query)}

    @translated
    def exclusive_blobs(self, store_url: str, checkpoint_ids: Iterable[int]) -> dict[str, int]:
        """The blobs (digest -> plain size) that the given checkpoints refer to and no
        other row of that store (pending ones included) does: what removing exactly
        these checkpoints would free, at the time of the call."""
        store = canonical_url(store_url)
        ids = sorted(set(checkpoint_ids))
        with self._catalog._tx(write=False) as session:
            digests: set[str] = set()
            for part_ids in chunks(ids):
                digests.update(
                    session.scalars(
                        select(CheckpointBlobRow.digest)
                        .join(CheckpointRow, CheckpointRow.id == CheckpointBlobRow.checkpoint_id)
                        .where(
                            CheckpointRow.store_url == store,
                            CheckpointBlobRow.checkpoint_id.in_(part_ids),
                        )
                    )
                )
            wanted = unique_sorted(digests)
            chosen = set(ids)
            shared: set[str] = set()
            sizes: dict[str, int] = {}
            for part in chunks(wanted):
                users = session.execute(
                    select(CheckpointBlobRow.digest, CheckpointBlobRow.checkpoint_id)
                    .join(CheckpointRow, CheckpointRow.id == CheckpointBlobRow.checkpoint_id)
                    .where(CheckpointRow.store_url == store, CheckpointBlobRow.digest.in_(part))
                )
                shared.update(d for d, user in users if user not in chosen)
                found = session.execute(
                    select(BlobRow.digest, BlobRow.size).where(
                        BlobRow.store_url == store, BlobRow.digest.in_(part)
                    )
                )
                sizes.update((d, size) for d, size in found)
        return {d: sizes.get(d, 0) for d in wanted if d not in shared}
