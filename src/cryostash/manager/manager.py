"""``CheckpointManager``: the one orchestrator (Docker's daemon/checkpoint.go, generalised).

All policy lives here; storage, catalog and engines are mechanisms.

Create: validate -> reserve (catalog, PENDING) -> dump to private scratch -> hash ->
record blob references -> upload missing blobs -> write manifest (create-only: the
store's commit marker) -> commit the catalog row (the visibility point for every
host) -> event -> clean scratch. Any failure after the reservation undoes what this
attempt wrote: its manifest (only if this attempt wrote it), the blobs no other
checkpoint refers to, the catalog row, and the scratch folder.

Restore: committed row -> manifest (its digest checked against the catalog) ->
fetch every file into scratch, verifying each hash -> engine restore -> event ->
clean scratch. Wrong bytes never reach the engine.
"""

from __future__ import annotations

import builtins
import contextlib
import platform
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, Self

from cryostash import hooks
from cryostash.config import Settings
from cryostash.engines import get_engine
from cryostash.engines.base import Engine
from cryostash.errors import CheckpointExists, CheckpointNotFound, CryostashError
from cryostash.manager import cleanup, creators
from cryostash.manager.inspection import Inspection, verified_manifest
from cryostash.manager.repository import Repository
from cryostash.names import validate_host, validate_labels, validate_name, validate_target
from cryostash.store import Manifest, Store
from cryostash.transfer import datapath
from cryostash.transfer.progress import Progress
from cryostash.transfer.scratch import mark_stopped, private_scratch
from cryostash.types import (
    CheckpointFilter,
    CheckpointInfo,
    DumpOptions,
    Event,
    RestoreOptions,
    RestoreResult,
)

if TYPE_CHECKING:
    from cryostash.catalog import Catalog
    from cryostash.transfer.baseline import Baseline


class CheckpointManager:
    """Create, list, inspect, restore and remove checkpoints.

    One instance serves one set of settings (default store, catalog, scratch, host),
    held by its :class:`~cryostash.manager.repository.Repository` (``mgr.repository``,
    built from these arguments; :meth:`for_repository` works on an existing one, as the
    operations do). Not thread-safe; use one per thread. Close it (or use it as a
    context manager) to release the catalog connection. The arguments are the
    repository's (see :class:`~cryostash.manager.repository.Repository`).
    """

    def __init__(
        self,
        settings: Settings,
        *,
        catalog: Catalog | None = None,
        jobs: int = 4,
        progress: Callable[[str], Progress | None] | None = None,
    ) -> None:
        self.repository = Repository(settings, catalog=catalog, jobs=jobs, progress=progress)

    @classmethod
    def for_repository(cls, repository: Repository) -> Self:
        """A manager working on ``repository`` (shared: closing either closes its catalog).
        ``__init__`` is not run: a subclass needing more state sets it itself."""
        mgr = cls.__new__(cls)
        mgr.repository = repository
        return mgr

    # -- plumbing (the repository's) ----------------------------------------------

    @property
    def settings(self) -> Settings:
        """The settings of the repository."""
        return self.repository.settings

    @property
    def jobs(self) -> int:
        """Parallel transfers (the repository's)."""
        return self.repository.jobs

    @jobs.setter
    def jobs(self, value: int) -> None:
        self.repository.jobs = value

    @property
    def catalog(self) -> Catalog:
        """The catalog, opened on first use (fails with SchemaOutdated if old)."""
        return self.repository.catalog

    def store(self, checkpoint_dir: str | None = None) -> Store:
        """The store for ``checkpoint_dir`` (a URL or path) or the default store."""
        return self.repository.store(checkpoint_dir)

    def close(self) -> None:
        """Release the catalog connection."""
        self.repository.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _progress_for(self, phase: str) -> Progress | None:
        """The progress callback for ``phase`` (``upload``, ``download``), if any."""
        return self.repository.progress_for(phase)

    def engine(self, name: str) -> Engine:
        """The engine called ``name``, configured with this manager's CRIU binary."""
        return get_engine(name, criu_path=self.settings.criu_path)

    @contextlib.contextmanager
    def _scratch(
        self, purpose: str, on_error: Sequence[Callable[[BaseException], None]] = ()
    ) -> Iterator[Path]:
        """A private (0700) scratch folder, locked while in use (so ``gc`` can tell it from
        one a crash left), removed on exit whatever happens. When the block fails, each of
        ``on_error`` (a list the block may still append to) is called with the error
        first, while the folder still exists; one may raise to replace the error."""
        with private_scratch(self.settings.scratch_dir, purpose) as path:
            try:
                yield path
            except BaseException as exc:
                for hook in on_error:
                    hook(exc)
                raise

    # -- create -------------------------------------------------------------------

    def create(
        self,
        target: str,
        name: str,
        *,
        locator: str,
        engine: str | Engine = "criu",
        leave_running: bool = False,
        checkpoint_dir: str | None = None,
        labels: Mapping[str, str] | None = None,
        engine_args: Sequence[str] = (),
        baseline: Baseline | None = None,
    ) -> CheckpointInfo:
        """Checkpoint ``locator`` (a PID for CRIU) as ``target``/``name`` with the engine
        named ``engine`` (or that engine object: ``import`` brings its own). ``baseline``
        (live migration): chunks proven unchanged since the image it holds are not cut
        or hashed again; a ``leave_running`` create that commits then leaves its own image
        there, for the next (:mod:`cryostash.transfer.baseline`).

        Raises:
            InvalidName: bad target or name (nothing is written).
            UsageError: a label or this host's name holds a control character.
            CheckpointExists: committed, or held by a live create (see
                :func:`cryostash.manager.creators.reserve`).
            EngineError / UsageError: ``Cannot checkpoint container TARGET: REASON``;
                everything this attempt wrote is removed.
            StorageError, CatalogError: likewise after clean-up.
        """
        validate_target(target)
        validate_name(name)
        labels = validate_labels(labels or {})
        validate_host(self.settings.host)
        store = self.store(checkpoint_dir)
        eng = self.engine(engine) if isinstance(engine, str) else engine
        store.check_writable()  # unwritable (named: bucket, credentials...): before the dump
        store.unlock()  # an encrypted store's key (KeyRequired, WrongKey) before anything
        lease_s = self.settings.lease_s
        info = creators.reserve(
            self.catalog, store, host=self.settings.host, lease_s=lease_s, target=target,
            name=name, engine=eng.name, labels=dict(labels or {}),
        )
        written: bytes | None = None
        beat = creators.Heartbeat(self.catalog, info.id, lease_s)
        beat.start()  # renews the lease until the commit: a live create keeps its name
        try:
            if store.manifests.exists(target, name):
                raise CheckpointExists(
                    f"checkpoint with name {name} already exists for container {target}"
                )
            if baseline is not None and not leave_running:  # before the dump: not downtime
                baseline.make_room()
            give_back: list[Callable[[BaseException], None]] = []
            with self._scratch(f"create-{target}-{name}", give_back) as image_dir:
                beat.renew(lock=image_dir)  # from here its lock says the creator lives
                t0 = time.monotonic()
                try:
                    dump = eng.dump(
                        locator,
                        image_dir,
                        DumpOptions(leave_running=leave_running, extra_args=tuple(engine_args)),
                    )
                except CryostashError as exc:
                    raise type(exc)(f"Cannot checkpoint container {target}: {exc}") from exc
                if not leave_running:  # from here a failure must not lose the process
                    mark_stopped(
                        image_dir,
                        f"cryostash create {target} {name} ({eng.name}, root PID "
                        f"{dump.root_pid}) stopped the process and did not finish storing "
                        f"it; this image is its only copy",
                    )
                    give_back.append(
                        lambda exc: cleanup.give_back(eng, target, image_dir, dump, exc)
                    )
                hooks.reached("after-dump")
                # Chunks are referenced in the catalog before they are uploaded: from
                # then no rm can free them. Chunks the catalog already knew are in the
                # store; the others are uploaded unless the store has them.
                packed = datapath.pack_image(
                    self.settings,
                    store,
                    image_dir,
                    reserve=lambda sizes: self.catalog.add_blob_refs(info.id, sizes),
                    jobs=self.jobs,
                    callback=self._progress_for("upload"),
                    baseline=baseline,
                )
                hooks.reached("after-upload")
                entries = packed.entries
                size_bytes = sum(e.size for e in entries)
                t_packed = time.monotonic()
                stats = datapath.create_stats(self.settings, dump, packed, t_packed - t0)
                manifest = Manifest(
                    target=target,
                    name=name,
                    engine=eng.name,
                    engine_version=dump.engine_version,
                    host=self.settings.host,
                    kernel=platform.release(),
                    created_at=info.created_at,
                    labels=dict(labels or {}),
                    parent=None,
                    stats=stats,
                    root_pid=dump.root_pid,
                    files=tuple(entries),
                )
                data = manifest.to_bytes()
                beat.renew()  # a full lease for the manifest and the commit
                written = data  # from here a manifest at this name may be ours
                store.manifests.write(target, name, data)
                hooks.reached("after-manifest")
                committed = self.catalog.commit(
                    info.id,
                    size_bytes=size_bytes,
                    stats=stats,
                    engine_version=dump.engine_version,
                    manifest_digest=store.sealing.manifest_digest(data),
                )
                hooks.reached("after-commit")
                if baseline is not None and leave_running:  # never raises
                    baseline.keep(image_dir, packed, store)
        except BaseException:
            beat.stop()
            cleanup.undo_create(self.catalog, store, info, written)
            raise
        finally:
            beat.stop()
        self.catalog.record_event(
            host=self.settings.host,
            action="checkpoint",
            target=target,
            name=name,
            store_url=store.url,
            detail={"engine": eng.name, "size_bytes": size_bytes, "leave_running": leave_running},
        )
        # From the end of the upload to here (manifest, catalog commit, scratch clean-up,
        # event): known only after the commit, so in the returned stats, not the recorded.
        commit_s = round(time.monotonic() - t_packed, 6)
        return replace(committed, stats={**committed.stats, "commit_s": commit_s})

    # -- read side --------------------------------------------------------------

    def list(
        self,
        target: str | None = None,
        checkpoint_dir: str | None = None,
        filters: CheckpointFilter | None = None,
    ) -> builtins.list[CheckpointInfo]:
        """Committed checkpoints in the store matching ``filters``, sorted by target
        then name."""
        if target is not None:
            validate_target(target)
        return self.repository.reader.list(self.store(checkpoint_dir).url, target, filters)

    def names(
        self,
        target: str | None = None,
        checkpoint_dir: str | None = None,
        filters: CheckpointFilter | None = None,
    ) -> builtins.list[tuple[str, str]]:
        """The ``(target, name)`` of each checkpoint :meth:`list` returns, in its order."""
        if target is not None:
            validate_target(target)
        return self.repository.reader.names(self.store(checkpoint_dir).url, target, filters)

    def latest(
        self,
        target: str,
        filters: CheckpointFilter | None = None,
        checkpoint_dir: str | None = None,
    ) -> CheckpointInfo:
        """The newest committed checkpoint of ``target`` in the store (by commit time,
        then id) that matches ``filters`` (``--latest``).

        Raises:
            CheckpointNotFound: ``no checkpoint of container TARGET matches (label K=V,
                host H, since T)`` (``... exists`` without filters).
        """
        validate_target(target)
        found = self.repository.reader.latest(self.store(checkpoint_dir).url, target, filters)
        if found is None:
            criteria = filters.describe() if filters else ""
            raise CheckpointNotFound(
                f"no checkpoint of container {target} matches ({criteria})"
                if criteria
                else f"no checkpoint of container {target} exists"
            )
        return found

    def get(self, target: str, name: str, checkpoint_dir: str | None = None) -> CheckpointInfo:
        """The committed checkpoint ``target``/``name``, or CheckpointNotFound."""
        validate_target(target)
        validate_name(name)
        return self.repository.reader.get(self.store(checkpoint_dir).url, target, name)

    def inspect(self, target: str, name: str, checkpoint_dir: str | None = None) -> Inspection:
        """The catalog row and the verified manifest of ``target``/``name``."""
        info = self.get(target, name, checkpoint_dir)
        return Inspection(info, self.manifest(self.store(checkpoint_dir), info))

    def manifest(self, store: Store, info: CheckpointInfo) -> Manifest:
        """The manifest of ``info`` in ``store``, checked against the catalog's digest."""
        return verified_manifest(store, info)

    def events(
        self, target: str | None = None, limit: int | None = None
    ) -> builtins.list[Event]:
        """The event log, oldest first."""
        if target is not None:
            validate_target(target)
        return self.repository.reader.events(target, limit)

    # -- restore ----------------------------------------------------------------

    def restore(
        self,
        target: str,
        name: str,
        *,
        checkpoint_dir: str | None = None,
        engine_args: Sequence[str] = (),
        engine: str | None = None,
        container: str | None = None,
        bundle: str | None = None,
        allow: Sequence[str] = (),
    ) -> RestoreResult:
        """Restore ``target``/``name``; returns the restored root PID.

        Every file is fetched into scratch and verified against its BLAKE3 digest
        before the engine sees it. Scratch is removed afterwards. ``engine`` overrides the
        recorded engine; ``container`` (``--as``), ``bundle`` and ``allow`` (what a
        re-created container may get beyond a safe default) go to container engines.

        Raises:
            CheckpointNotFound: ``checkpoint NAME does not exist for container TARGET``.
            IntegrityError: a stored object is corrupt or missing (names file and blob).
            EngineError: the engine could not restore.
        """
        info = self.get(target, name, checkpoint_dir)
        store = self.store(checkpoint_dir)
        manifest = self.manifest(store, info)
        eng = self.engine(engine or info.engine)
        t0 = time.monotonic()
        with self._scratch(f"restore-{target}-{name}") as image_dir:
            down = datapath.unpack_image(
                self.settings, store, manifest.files, image_dir, jobs=self.jobs,
                callback=self._progress_for("download"),
            )
            t1 = time.monotonic()
            result = eng.restore(
                image_dir,
                RestoreOptions(
                    manifest.root_pid, tuple(engine_args), container=container, bundle=bundle,
                    allow=frozenset(allow),
                ),
            )
            restore_s = time.monotonic() - t1
        cached = datapath.cache_for(self.settings, store) is not None
        stats = datapath.restore_stats(down, restore_s, time.monotonic() - t0, cached)
        self.catalog.record_event(
            host=self.settings.host,
            action="restore",
            target=target,
            name=name,
            store_url=store.url,
            detail={"pid": result.pid, **stats},
        )
        return RestoreResult(
            pid=result.pid, duration_s=result.duration_s, details={**dict(result.details), **stats}
        )

    # -- prefetch ---------------------------------------------------------------

    def prefetch(
        self, target: str, name: str, checkpoint_dir: str | None = None
    ) -> dict[str, Any]:
        """Download the chunks of ``target``/``name`` that the local chunk cache lacks,
        verified, into the cache, so that a restore here downloads nothing.

        A store on the local disk needs nothing (its objects are local): the stats are
        zeros with ``skipped: "local store"`` and no event is recorded. Otherwise the
        stats of :func:`cryostash.transfer.datapath.prefetch_image` are returned (``warning`` is
        set when the cache bound cannot hold the checkpoint) and recorded in a
        ``prefetch`` event.

        Raises:
            CheckpointNotFound: ``checkpoint NAME does not exist for container TARGET``.
            UsageError: the chunk cache is turned off.
            IntegrityError: a stored object is corrupt or missing (names file and blob;
                it is not cached).
        """
        info = self.get(target, name, checkpoint_dir)
        store = self.store(checkpoint_dir)
        if not store.remote:
            return datapath.prefetch_skipped("local store")
        datapath.require_cache(self.settings, store)  # before anything is read
        manifest = self.manifest(store, info)
        stats = datapath.prefetch_image(
            self.settings, store, manifest.files, jobs=self.jobs,
            callback=self._progress_for("download"),
        )
        self.catalog.record_event(
            host=self.settings.host,
            action="prefetch",
            target=target,
            name=name,
            store_url=store.url,
            detail=stats,
        )
        return stats

    # -- remove -----------------------------------------------------------------

    def remove(self, target: str, name: str, checkpoint_dir: str | None = None) -> None:
        """Remove ``target``/``name``: its catalog row, its manifest and every blob
        no other checkpoint (committed or pending) refers to.

        The catalog row goes first (readers stop seeing it at once); a crash after
        that leaves objects that ``gc`` removes.
        """
        self.remove_checkpoint(self.get(target, name, checkpoint_dir), checkpoint_dir)

    def remove_checkpoint(
        self, info: CheckpointInfo, checkpoint_dir: str | None = None, *, by: str | None = None
    ) -> builtins.list[str]:
        """Remove the checkpoint ``info`` as :meth:`remove` does, by its id; returns the
        digests of the blobs deleted from the store. ``by`` (e.g. ``"prune"``) is recorded
        in the ``delete`` event.

        Raises:
            CheckpointNotFound: that row is gone (nothing else is touched).
        """
        store = self.store(checkpoint_dir)
        orphans = self.catalog.remove(info.id)
        store.manifests.delete(info.target, info.name)
        done = cleanup.delete_unreferenced_blobs(self.catalog, store, orphans, strict=True)
        self.catalog.record_event(
            host=self.settings.host,
            action="delete",
            target=info.target,
            name=info.name,
            store_url=store.url,
            detail={"blobs_deleted": len(orphans), **({"by": by} if by else {})},
        )
        return done.deleted


def repository_of(context: Repository | CheckpointManager) -> Repository:
    """The repository ``context`` is, or the one a manager works on (operations take either)."""
    return context if isinstance(context, Repository) else context.repository


def manager_of(context: Repository | CheckpointManager) -> CheckpointManager:
    """``context`` if a manager, else a manager working on that repository."""
    if isinstance(context, CheckpointManager):
        return context
    return CheckpointManager.for_repository(context)
