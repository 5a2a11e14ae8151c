"""``create``: checkpoint a process tree or a container into the store.

Validate -> reserve (catalog, PENDING) -> dump to private scratch -> hash -> record blob
references -> upload missing blobs -> write manifest (create-only: the store's commit
marker) -> commit the catalog row (the visibility point for every host) -> event -> clean
scratch. Any failure after the reservation undoes what this attempt wrote: its manifest
(only if this attempt wrote it), the blobs no other checkpoint refers to, the catalog
row, and the scratch folder (:func:`cryostash.repository.cleanup.undo_create`). A dump
that stopped the process and then failed to be stored gives the process back
(:func:`cryostash.repository.cleanup.give_back`).
"""

from __future__ import annotations

import platform
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING

from cryostash import hooks
from cryostash.errors import CheckpointExists, CryostashError
from cryostash.names import validate_host, validate_labels, validate_name, validate_target
from cryostash.repository import Repository, cleanup, reservations
from cryostash.store import Manifest
from cryostash.transfer import datapath
from cryostash.transfer.scratch import mark_stopped
from cryostash.types import CheckpointInfo, DumpOptions

if TYPE_CHECKING:
    from cryostash.engines.base import Engine
    from cryostash.transfer.baseline import Baseline


@dataclass(frozen=True)
class CreateRequest:
    """What to checkpoint, and how.

    Attributes:
        target: the checkpoint's target (for a container engine, the container).
        name: the checkpoint's name.
        locator: what the engine dumps (a PID for CRIU, the container otherwise).
        engine: the engine's name.
        leave_running: keep the process running after the dump.
        checkpoint_dir: the store, when not the default one.
        labels: the checkpoint's labels.
        engine_args: extra engine arguments (``--criu-opt``, common flags), verbatim.
    """

    target: str
    name: str
    locator: str
    engine: str = "criu"
    leave_running: bool = False
    checkpoint_dir: str | None = None
    labels: dict[str, str] = field(default_factory=dict)
    engine_args: tuple[str, ...] = ()


def check_locator(engine: Engine, locator: str) -> None:
    """Refuse ``locator`` now when ``engine`` can tell it cannot dump it (an engine may
    define ``check_locator(locator)``; the criu engine refuses what is not a live process:
    ``invalid PID 'abc': ...``, ``no process with PID 999999``).

    Raises:
        UsageError: the engine's reason, in its own words.
    """
    check = getattr(engine, "check_locator", None)
    if callable(check):
        check(locator)


def create(
    repo: Repository,
    request: CreateRequest,
    *,
    engine: Engine | None = None,
    baseline: Baseline | None = None,
) -> CheckpointInfo:
    """Checkpoint ``request.locator`` as ``request.target``/``request.name`` (see the
    module docstring); the committed row, its stats with ``commit_s`` added.

    In-process extras (not part of the request): ``engine``, an engine object to use
    instead of the one ``request.engine`` names (``import`` brings its own); ``baseline``
    (live migration): chunks proven unchanged since the image it holds are not cut or
    hashed again; a ``leave_running`` create that commits then leaves its own image there,
    for the next (:mod:`cryostash.transfer.baseline`).

    Raises:
        InvalidName: bad target or name (nothing is written).
        UsageError: a label or this host's name holds a control character; the engine
            cannot dump ``request.locator`` (:func:`check_locator`: nothing is written).
        CheckpointExists: committed, or held by a live create (see
            :func:`cryostash.repository.reservations.reserve`).
        EngineError / UsageError: ``Cannot checkpoint container TARGET: REASON``;
            everything this attempt wrote is removed.
        StorageError, CatalogError: likewise after clean-up.
    """
    target, name, leave_running = request.target, request.name, request.leave_running
    validate_target(target)
    validate_name(name)
    labels = dict(validate_labels(request.labels or {}))
    settings = repo.settings
    validate_host(settings.host)
    store = repo.store(request.checkpoint_dir)
    eng = engine if engine is not None else repo.engine(request.engine)
    check_locator(eng, request.locator)  # a bad or missing PID: before any work
    store.check_writable()  # unwritable (named: bucket, credentials...): before the dump
    store.unlock()  # an encrypted store's key (KeyRequired, WrongKey) before anything
    catalog, lease_s = repo.catalog, settings.lease_s
    info = reservations.reserve(
        catalog, store, host=settings.host, lease_s=lease_s, target=target,
        name=name, engine=eng.name, labels=labels,
    )
    written: bytes | None = None
    beat = reservations.Heartbeat(catalog, info.id, lease_s)
    beat.start()  # renews the lease until the commit: a live create keeps its name
    try:
        if store.manifests.exists(target, name):
            raise CheckpointExists(
                f"checkpoint with name {name} already exists for container {target}"
            )
        if baseline is not None and not leave_running:  # before the dump: not downtime
            baseline.make_room()
        give_back: list[Callable[[BaseException], None]] = []
        with repo.scratch(f"create-{target}-{name}", give_back) as image_dir:
            beat.renew(lock=image_dir)  # from here its lock says the creator lives
            t0 = time.monotonic()
            try:
                with repo.tracking("dump"):
                    dump = eng.dump(
                        request.locator,
                        image_dir,
                        DumpOptions(leave_running=leave_running, extra_args=request.engine_args),
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
            # Chunks are referenced in the catalog before they are uploaded: from then no
            # rm can free them. Chunks the catalog already knew are in the store; the
            # others are uploaded unless the store has them.
            packed = datapath.pack_image(
                settings,
                store,
                image_dir,
                reserve=lambda sizes: catalog.add_blob_refs(info.id, sizes),
                jobs=repo.jobs,
                callback=repo.progress_for("upload"),
                baseline=baseline,
            )
            hooks.reached("after-upload")
            entries = packed.entries
            size_bytes = sum(e.size for e in entries)
            t_packed = time.monotonic()
            stats = datapath.create_stats(settings, dump, packed, t_packed - t0)
            manifest = Manifest(
                target=target,
                name=name,
                engine=eng.name,
                engine_version=dump.engine_version,
                host=dump.host or settings.host,
                kernel=dump.kernel or platform.release(),
                created_at=info.created_at,
                labels=labels,
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
            committed = catalog.commit(
                info.id,
                size_bytes=size_bytes,
                stats=stats,
                engine_version=dump.engine_version,
                manifest_digest=store.sealing.manifest_digest(data),
                host=dump.host,
            )
            hooks.reached("after-commit")
            if baseline is not None and leave_running:  # never raises
                baseline.keep(image_dir, packed, store)
    except BaseException:
        beat.stop()
        cleanup.undo_create(catalog, store, info, written)
        raise
    finally:
        beat.stop()
    catalog.record_event(
        host=settings.host,
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
