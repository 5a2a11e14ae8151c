"""Removing what nobody needs any more, safely against other hosts.

- :func:`remove_checkpoint`: a committed checkpoint, as ``rm`` and ``prune`` remove one.
- :func:`delete_unreferenced_blobs`: delete blobs from a store, each only if no
  catalog row refers to it at the moment it is deleted (``rm``, a failed create, gc).
- :func:`undo_create`: best-effort removal of what a failed create wrote.
- :func:`undo_abandoned`: the same for a create that died (another process's row).
- :func:`give_back`: restart the process a failed create's dump had stopped.

Both lean on :meth:`CatalogMaintenance.claim_unreferenced`, which makes a concurrent
create that wants the same blob wait, then upload it again.
"""

from __future__ import annotations

import contextlib
import tempfile
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from cryostash.engines.base import Engine
from cryostash.errors import CatalogError, CheckpointNotFound, CryostashError
from cryostash.names import names_ok
from cryostash.store import Store
from cryostash.transfer.progress import Progress
from cryostash.transfer.scratch import short_name
from cryostash.types import CheckpointInfo, DumpStats, RestoreOptions, Status

if TYPE_CHECKING:  # SQLAlchemy: loaded when a blob is deleted, not by the read verbs
    from cryostash.catalog import Catalog
    from cryostash.repository.repository import Repository

#: Digests claimed per catalog transaction (other writers wait while one runs).
BATCH = 200


@dataclass
class Deleted:
    """What :func:`delete_unreferenced_blobs` did."""

    deleted: list[str] = field(default_factory=list)
    kept: list[str] = field(default_factory=list)  #: referenced again meanwhile
    errors: list[str] = field(default_factory=list)


def delete_unreferenced_blobs(
    catalog: Catalog,
    store: Store,
    digests: Iterable[str],
    *,
    strict: bool = False,
    callback: Progress | None = None,
) -> Deleted:
    """Delete those of ``digests`` that no catalog row refers to, batch by batch.

    Each batch is claimed in the catalog first (see
    :meth:`CatalogMaintenance.claim_unreferenced`), so a blob is never deleted while a
    checkpoint, pending or committed, refers to it. Deleting is idempotent.

    Args:
        strict: raise the first storage error instead of collecting it in ``errors``
            (the failing batch is then rolled back in the catalog).
        callback: told the number of ``digests``, then each batch's once it is done
            (deleted, kept or failed).
    """
    from cryostash.catalog.maintenance import CatalogMaintenance

    result = Deleted()
    todo = sorted(set(digests))
    maintenance = CatalogMaintenance(catalog)
    if callback is not None:
        callback.set_size(len(todo))
    for start in range(0, len(todo), BATCH):
        batch = todo[start : start + BATCH]
        with maintenance.claim_unreferenced(store.url, batch) as free:
            for digest in sorted(free):
                try:
                    store.chunks.delete(digest)
                except CryostashError as exc:
                    if strict:
                        raise
                    result.errors.append(f"blob {digest}: {exc}")
                    continue
                result.deleted.append(digest)
            result.kept.extend(d for d in batch if d not in free)
        if callback is not None:
            callback.relative_update(len(batch))
    return result


def remove_checkpoint(
    repository: Repository,
    info: CheckpointInfo,
    checkpoint_dir: str | None = None,
    *,
    by: str | None = None,
) -> list[str]:
    """Remove the checkpoint ``info`` by its id: its catalog row, its manifest and every
    blob no other checkpoint (committed or pending) refers to; returns the digests of the
    blobs deleted. ``by`` (e.g. ``"prune"``) is recorded in the ``delete`` event.

    The catalog row goes first (readers stop seeing it at once); a crash after that
    leaves objects that ``gc`` removes.

    Raises:
        CheckpointNotFound: that row is gone (nothing else is touched).
    """
    store, catalog = repository.store(checkpoint_dir), repository.catalog
    orphans = catalog.remove(info.id)
    if names_ok(info.target, info.name):  # else no store path can be made of them: gc's
        store.manifests.delete(info.target, info.name)
    done = delete_unreferenced_blobs(catalog, store, orphans, strict=True)
    catalog.record_event(
        host=repository.host,
        action="delete",
        target=info.target,
        name=info.name,
        store_url=store.url,
        detail={"blobs_deleted": len(orphans), **({"by": by} if by else {})},
    )
    return done.deleted


def undo_create(
    catalog: Catalog, store: Store, info: CheckpointInfo, manifest: bytes | None
) -> None:
    """Best-effort removal of everything a failed create wrote; errors are swallowed
    (the caller re-raises the original error; ``gc`` finishes whatever is left).

    Args:
        info: the reservation (PENDING row) of the failed create.
        manifest: the manifest bytes this attempt wrote or tried to write (a failed
            write may leave a torn object on some backends), or None if it never tried.

    The manifest is removed only if it is this attempt's. While the row is PENDING the
    name is ours (the store had no manifest when the create started), so whatever is
    there is removed; if the row is gone (``gc`` undid the create after its lease
    expired), only bytes equal to ``manifest``; if it is COMMITTED (by this attempt's
    commit, whose reply was lost, or by ``gc``), nothing is touched.

    If the catalog cannot say (it is unreachable: a commit may have been applied and
    its reply lost), nothing at all is touched: deleting the manifest could leave a
    committed row without one. The row stays PENDING or COMMITTED; ``gc`` settles a
    PENDING one after its lease (a whole manifest is committed, else undone).
    Otherwise the row is aborted and the blobs no other row refers to are deleted.
    """
    try:
        status: Status | None = catalog.get_by_id(info.id).status
    except CheckpointNotFound:
        status = None  # gc undid it already
    except Exception:  # outcome unknown (the catalog may be what failed): leave it to gc
        return
    if status is Status.COMMITTED:
        return
    if manifest is not None:
        with contextlib.suppress(Exception):
            if status is Status.PENDING or store.manifests.read(info.target, info.name) == manifest:
                store.manifests.delete(info.target, info.name)
    if status is None:
        return
    orphans: list[str] = []
    with contextlib.suppress(Exception):
        orphans = catalog.abort(info.id)
    with contextlib.suppress(Exception):
        delete_unreferenced_blobs(catalog, store, orphans)


def undo_abandoned(catalog: Catalog, store: Store, info: CheckpointInfo) -> bool:
    """Undo the abandoned reservation ``info`` (its creator is dead or its lease expired,
    see :mod:`cryostash.repository.reservations`): abort its row, then remove the manifest it
    may have written and the blobs nobody else refers to. True when the row is gone
    (aborted now or by someone else meanwhile); False if it was committed meanwhile.

    Safe against a concurrent undo and a new create of the name: the manifest is deleted
    only if it still holds the bytes read before the row was aborted.
    """
    try:
        before: bytes | None = store.manifests.read(info.target, info.name)
    except CheckpointNotFound:
        before = None
    try:
        orphans = catalog.abort(info.id)  # a row already gone gives []
    except CatalogError:
        return False  # committed meanwhile (by its creator or gc)
    if before is not None:
        with contextlib.suppress(CheckpointNotFound):
            if store.manifests.read(info.target, info.name) == before:
                store.manifests.delete(info.target, info.name)
    delete_unreferenced_blobs(catalog, store, orphans)
    return True


def give_back(
    eng: Engine, target: str, image_dir: Path, dump: DumpStats, exc: BaseException
) -> None:
    """A dump without ``leave_running`` stopped the process, then storing its image
    failed with ``exc``: restart the process from the local image, so that a failed
    create never loses a process. If that fails too, the image is moved out of
    scratch (``SCRATCH/kept-TARGET-...``, which ``gc`` never removes) for a manual
    ``criu restore``. Raises ``exc``'s class with a message saying which happened
    (a non-cryostash error, e.g. an interrupt, is left as it is)."""
    try:
        result = eng.restore(image_dir, RestoreOptions(dump.root_pid))
        outcome = f"the process was restarted from the local image (PID {result.pid})"
    except Exception as again:
        kept = Path(
            tempfile.mkdtemp(prefix=f"kept-{short_name(target)}-", dir=image_dir.parent)
        )
        image_dir.rename(kept / "images")
        outcome = (
            f"the dump stopped the process and restarting it failed ({again}); its image "
            f"is kept in {kept / 'images'} (criu restore -D {kept / 'images'})"
        )
    if isinstance(exc, CryostashError):
        raise type(exc)(f"{exc}; {outcome}") from exc
