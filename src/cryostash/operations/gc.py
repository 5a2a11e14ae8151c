"""``gc``: finish or undo abandoned creates, remove what nothing refers to.

:func:`gc` works on one store (and this host's scratch folder):

1. Every abandoned PENDING row (its lease has expired, or its creator ran on this host
   and is provably dead: :mod:`cryostash.repository.reservations`) is finished or undone.
   Complete (its manifest is present and valid, and every blob it names is stored, with
   a plausible size): the row is committed, as its creator would have done
   (event ``gc-commit``). Otherwise the row is aborted, then its manifest, if any, is
   removed (event ``gc-abort``); its blobs become unreferenced.
2. Manifests that no catalog row knows ("untracked": a catalog restored from an older
   copy, a second catalog on the same store, a crash of ``rm``): one that is valid and
   complete (every blob it names stored, with a plausible size) is adopted as ``catalog
   rebuild`` imports it (event ``gc-adopt``), whatever its age: gc never deletes a
   checkpoint that can be restored. Only invalid or incomplete ones, older than the grace
   period, are removed.
3. Blobs that no catalog row (pending ones included) and no remaining manifest refers
   to, and that are older than the grace period, are removed. Each is claimed in the
   catalog first (:func:`cryostash.repository.cleanup.delete_unreferenced_blobs`), so a blob that
   a create on another host starts using meanwhile is kept, or uploaded again by it.
4. Strays older than the grace period (temporary files of interrupted writes, files of
   checkpoint folders without a manifest, see :mod:`cryostash.store.inventory`) are
   removed, and on local disk the empty folders they leave; the folders of checkpoints
   still being created (PENDING, lease not expired) are left alone whatever their age,
   and so are temporary files younger than the oldest such create (its uploads).
5. Scratch folders of this host whose process has died (see :mod:`cryostash.transfer.scratch`)
   and that are older than the grace period are removed — except one holding the image of
   a process its crashed create had stopped (no ``--leave-running``): the only copy of
   that process is moved to ``SCRATCH/kept-...`` (``scratch_kept``) for a manual
   ``criu restore``, never deleted. A lazy-restore helper killed by SIGKILL leaves its
   folder (``lazy-...``) with its FUSE view still mounted inside: the mount is detached
   first (``mounts_unmounted``), then the folder removed.

Age: the modification time the store reports (local ``mtime``, S3 ``LastModified``);
for a blob the store gives no time for, the catalog's ``blobs.created_at``; an object
of unknown age is kept unless the grace period is zero.

Safety interlock: if the catalog knows no checkpoint at all of a store that holds
manifests (a lost or replaced catalog), gc refuses to run: ``catalog rebuild`` first.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from cryostash.catalog.maintenance import CatalogMaintenance
from cryostash.errors import (
    CatalogError,
    CheckpointNotFound,
    CryostashError,
    IntegrityError,
)
from cryostash.operations.rebuild import adopt
from cryostash.operations.verify import presence_problem
from cryostash.repository import Repository
from cryostash.repository.cleanup import delete_unreferenced_blobs
from cryostash.repository.reservations import abandoned
from cryostash.store import Manifest, Store, StoredManifest
from cryostash.store.inventory import Inventory, StoredObject
from cryostash.store.manifest import load_manifest
from cryostash.transfer.progress import counted
from cryostash.transfer.scratch import (
    keep_if_stopped,
    leftover_mounts,
    remove_if_stale,
    stale_scratch,
)
from cryostash.types import CheckpointInfo

#: Default grace period: unreferenced objects younger than this are kept.
DEFAULT_GRACE_S = 24 * 3600.0
#: Clocks of hosts and stores may disagree by this much (temporary files of live creates).
CLOCK_SKEW = timedelta(minutes=5)


@dataclass(frozen=True)
class GcRequest:
    """How to collect: objects younger than ``grace_s`` seconds are kept; ``dry_run``
    decides everything and changes nothing; ``checkpoint_dir``: the store (default: the
    repository's default store)."""

    grace_s: float = DEFAULT_GRACE_S
    dry_run: bool = False
    checkpoint_dir: str | None = None


@dataclass(frozen=True)
class GcReport:
    """What :func:`gc` did (or, with ``dry_run``, would do)."""

    store_url: str
    dry_run: bool
    grace_s: float
    committed: tuple[str, ...]
    aborted: tuple[str, ...]
    manifests_deleted: tuple[str, ...]
    blobs_deleted: int
    bytes_deleted: int
    strays_deleted: tuple[str, ...]
    scratch_deleted: tuple[str, ...]
    kept_young: int
    kept_unknown_age: int
    errors: tuple[str, ...]
    #: stale scratch folders holding the image of a process a crashed create had stopped:
    #: moved to ``kept-...`` (or, in a dry run, would be), never deleted.
    scratch_kept: tuple[str, ...] = ()
    #: complete manifests the catalog did not know, imported as committed checkpoints.
    adopted: tuple[str, ...] = ()
    #: FUSE mounts left in stale scratch folders (a lazy-restore helper killed), detached.
    mounts_unmounted: tuple[str, ...] = ()

    @property
    def ok(self) -> bool:
        """True when nothing failed."""
        return not self.errors

    @property
    def changed(self) -> bool:
        """True when something was (or would be) finished, undone or removed."""
        return bool(
            self.committed or self.aborted or self.adopted or self.manifests_deleted
            or self.blobs_deleted
            or self.strays_deleted or self.scratch_deleted or self.scratch_kept
            or self.mounts_unmounted
        )

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready form (``gc --json``)."""
        return {
            "store": self.store_url,
            "dry_run": self.dry_run,
            "grace_s": self.grace_s,
            "committed": list(self.committed),
            "aborted": list(self.aborted),
            "adopted": list(self.adopted),
            "manifests_deleted": list(self.manifests_deleted),
            "blobs_deleted": self.blobs_deleted,
            "bytes_deleted": self.bytes_deleted,
            "strays_deleted": list(self.strays_deleted),
            "scratch_deleted": list(self.scratch_deleted),
            "scratch_kept": list(self.scratch_kept),
            "mounts_unmounted": list(self.mounts_unmounted),
            "kept_young": self.kept_young,
            "kept_unknown_age": self.kept_unknown_age,
            "errors": list(self.errors),
        }


def _complete(manifest: Manifest | None, inv: Inventory, overhead: int) -> bool:
    if manifest is None:
        return False
    sizes = {d: o.size for d, o in inv.blobs.items()}
    return presence_problem(manifest, sizes, overhead) is None


def _read_or_none(store: Store, target: str, name: str) -> bytes | None:
    try:
        return store.manifests.read(target, name)
    except CheckpointNotFound:
        return None


def _finish_or_undo(
    repo: Repository, store: Store, info: CheckpointInfo, inv: Inventory, dry_run: bool
) -> str | None:
    """``committed`` or ``aborted`` (what was done), None if somebody else settled it."""
    t, n = info.target, info.name
    data = _read_or_none(store, t, n)  # the bytes, valid or not: only these are undone
    stored: StoredManifest | None = None
    if data is not None:
        try:
            stored = load_manifest(data, target=t, name=n)  # pending: no digest recorded
        except IntegrityError:
            stored = None
    complete = stored is not None and _complete(stored.manifest, inv, store.sealing.overhead)
    if dry_run:
        return "committed" if complete else "aborted"
    catalog = repo.catalog
    if complete and stored is not None:
        manifest = stored.manifest
        try:
            catalog.add_blob_refs(info.id, manifest.chunk_sizes)
            catalog.commit(
                info.id,
                size_bytes=manifest.size,
                stats=manifest.stats,
                engine_version=manifest.engine_version,
                manifest_digest=stored.digest,
            )
        except (CheckpointNotFound, CatalogError):
            return None  # its creator (or another gc) settled it first
        outcome = "committed"
    else:
        try:
            catalog.abort(info.id)  # first: from now on its creator cannot commit
        except CatalogError:
            return None  # committed meanwhile
        # Only the manifest judged incomplete, not one a new create of the name wrote since.
        if data is not None and _read_or_none(store, t, n) == data:
            store.manifests.delete(t, n)
        outcome = "aborted"
    catalog.record_event(
        host=repo.host,
        action="gc-commit" if outcome == "committed" else "gc-abort",
        target=t,
        name=n,
        store_url=store.url,
        detail={"created_by": info.host, "created_at": info.created_at.isoformat()},
    )
    return outcome


def _owner(path: str) -> tuple[str, str] | None:
    """The checkpoint whose folder holds ``path`` (``checkpoints/T/N/...``), if any."""
    parts = path.split("/")
    return (parts[1], parts[2]) if len(parts) >= 4 and parts[0] == "checkpoints" else None


def _is_old(obj: StoredObject, fallback: datetime | None, cutoff: datetime, grace_s: float) -> bool:
    when = obj.modified or fallback
    if when is None:
        return grace_s == 0
    return when <= cutoff


def gc(repo: Repository, request: GcRequest, *, now: datetime | None = None) -> GcReport:
    """Run gc on one store (see the module docstring) and report what it did. ``now``:
    the current time (tests); default: the clock.

    Raises:
        CatalogError: the safety interlock (see the module docstring), or the catalog
            failed.
        StorageError: the store could not be listed. Failures to delete single
            objects are collected in ``errors`` instead.
    """
    grace_s, dry_run = request.grace_s, request.dry_run
    now = now or datetime.now(UTC)
    cutoff = now - timedelta(seconds=grace_s)
    store, catalog = repo.store(request.checkpoint_dir), repo.catalog
    store.unlock(restore=True)  # the key (KeyRequired, WrongKey, RestoreKeyRequired) first
    inv = store.maintenance.inventory()
    _interlock(repo, store, inv)
    errors: list[str] = []
    committed: list[str] = []
    aborted: list[tuple[str, str]] = []
    settle = [i for i in catalog.pending(store.url) if abandoned(i, repo.host, now)]
    for info in settle:
        try:
            outcome = _finish_or_undo(repo, store, info, inv, dry_run)
        except CryostashError as exc:
            errors.append(f"{info.target}/{info.name}: {exc}")
            continue
        if outcome == "committed":
            committed.append(f"{info.target}/{info.name}")
        elif outcome == "aborted":
            aborted.append((info.target, info.name))
    creating = catalog.pending(store.url)
    live = {(i.target, i.name) for i in creating}  # being created
    # Temporary files of their uploads are younger than the oldest of them (with margin).
    busy_since = min((i.created_at for i in creating), default=None)
    busy_since = busy_since - CLOCK_SKEW if busy_since is not None else None
    tracked = live | {(i.target, i.name) for i in catalog.list(store.url)}
    manifests = {k: v for k, v in inv.manifests.items() if k not in aborted}
    untracked = {k: v for k, v in manifests.items() if k not in tracked}
    spared, adopted = _adopt_complete(repo, store, inv, sorted(untracked), dry_run, errors)
    untracked = {k: v for k, v in untracked.items() if k not in spared}
    doomed = sorted(k for k, v in untracked.items() if _is_old(v, None, cutoff, grace_s))
    roots = set(catalog.referenced_digests(store.url))
    with repo.tracking("gc-manifests") as callback:
        for key in counted([k for k in manifests if k not in doomed], callback):
            try:
                roots |= store.manifests.load(*key).manifest.blob_digests
            except (CheckpointNotFound, IntegrityError):
                continue  # gone meanwhile, or unreadable: the catalog's references count
    unreferenced = {d: obj for d, obj in inv.blobs.items() if d not in roots}
    known_at = CatalogMaintenance(catalog).blob_created_at(
        store.url, [d for d, o in unreferenced.items() if o.modified is None]
    )
    old_blobs = [
        d for d, o in unreferenced.items() if _is_old(o, known_at.get(d), cutoff, grace_s)
    ]
    old_strays = [
        o for o in inv.strays if _is_old(o, None, cutoff, grace_s) and _owner(o.path) not in live
        and (busy_since is None or _is_old(o, None, busy_since, 1))
    ]
    old_set = set(old_blobs)
    kept_blobs = [d for d in unreferenced if d not in old_set]
    kept = [o for o in inv.strays if o not in old_strays]
    kept += [v for k, v in untracked.items() if k not in doomed]
    unknown = sum(1 for o in kept if o.modified is None)
    unknown += sum(1 for d in kept_blobs if unreferenced[d].modified is None and d not in known_at)
    scratch = stale_scratch(repo.settings.scratch_dir, older_than=cutoff.timestamp())
    stopped = [p for p in scratch if p.with_name(f"{p.name}.stopped").exists()]
    scratch = [p for p in scratch if p not in stopped]
    deleted_blobs, deleted_manifests, deleted_strays = list(old_blobs), list(doomed), old_strays
    unmounted = [m for p in scratch for m in leftover_mounts(p)]
    if not dry_run:
        deleted_manifests = []
        for key in doomed:
            try:
                store.manifests.delete(*key)
                deleted_manifests.append(key)
            except CryostashError as exc:
                errors.append(f"manifest of {key[0]}/{key[1]}: {exc}")
        with repo.tracking("gc-blobs") as callback:
            result = delete_unreferenced_blobs(catalog, store, old_blobs, callback=callback)
        deleted_blobs, errors = result.deleted, errors + result.errors
        deleted_strays = []
        for obj in old_strays:
            try:
                store.maintenance.delete_stray(obj.path)
                deleted_strays.append(obj)
            except CryostashError as exc:
                errors.append(f"{obj.path}: {exc}")
        store.maintenance.tidy(older_than=cutoff.timestamp(), keep=live)
        unmounted = []
        scratch = [p for p in scratch if remove_if_stale(p, unmounted)]
        stopped = [k for k in (keep_if_stopped(p) for p in stopped) if k is not None]
    return GcReport(
        store_url=store.url,
        dry_run=dry_run,
        grace_s=grace_s,
        committed=tuple(committed),
        aborted=tuple(f"{t}/{n}" for t, n in aborted),
        adopted=tuple(adopted),
        manifests_deleted=tuple(f"{t}/{n}" for t, n in deleted_manifests),
        blobs_deleted=len(deleted_blobs),
        bytes_deleted=sum(inv.blobs[d].size for d in deleted_blobs),
        strays_deleted=tuple(o.path for o in deleted_strays),
        scratch_deleted=tuple(str(p) for p in scratch),
        scratch_kept=tuple(str(p) for p in stopped),
        mounts_unmounted=tuple(unmounted),
        kept_young=len(kept) + len(kept_blobs) - unknown,
        kept_unknown_age=unknown,
        errors=tuple(errors),
    )


def _adopt_complete(
    repo: Repository,
    store: Store,
    inv: Inventory,
    keys: list[tuple[str, str]],
    dry_run: bool,
    errors: list[str],
) -> tuple[set[tuple[str, str]], list[str]]:
    """Adopt (:func:`~cryostash.operations.rebuild.adopt`) every untracked manifest of
    ``keys`` that is valid and complete. Returns the keys gc must not delete (adopted or,
    in a dry run, adoptable; inserted meanwhile by someone else; gone; or not judged
    because reading or adopting failed: ``errors``; the rest are invalid or incomplete),
    and the ``TARGET/NAME`` of those adopted (in a dry run: adoptable)."""
    spared: set[tuple[str, str]] = set()
    adopted: list[str] = []
    stored = {d: o.size for d, o in inv.blobs.items()}
    for key in keys:
        try:
            loaded = store.manifests.load(*key)
        except IntegrityError:
            continue  # invalid: removable after the grace period
        except CheckpointNotFound:
            spared.add(key)  # gone meanwhile
            continue
        except CryostashError as exc:
            errors.append(f"manifest of {key[0]}/{key[1]}: {exc}")
            spared.add(key)
            continue
        if presence_problem(loaded.manifest, stored) is not None:
            continue  # incomplete: removable after the grace period
        spared.add(key)
        try:
            if dry_run or adopt(repo, store, loaded, action="gc-adopt"):
                adopted.append(f"{key[0]}/{key[1]}")
        except CryostashError as exc:
            errors.append(f"{key[0]}/{key[1]}: could not adopt it: {exc}")
    return spared, adopted


def _interlock(repo: Repository, store: Store, inv: Inventory) -> None:
    """Refuse to run when the catalog knows no committed checkpoint of a store whose
    manifests it does not know either: a lost or replaced catalog."""
    if not inv.manifests or repo.catalog.list(store.url):
        return
    pending = {(i.target, i.name) for i in repo.catalog.pending(store.url)}
    strangers = [k for k in inv.manifests if k not in pending]
    if strangers:
        raise CatalogError(
            f"catalog {repo.catalog.url} knows no checkpoint of store {store.url}, which "
            f"holds {len(strangers)} manifests it does not know: if the catalog was lost "
            "or replaced, run `cryostash catalog rebuild` first (gc would delete them)"
        )
