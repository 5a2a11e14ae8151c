"""``restore``: fetch, verify and restore a checkpoint (eagerly: every byte first).

Committed row -> manifest (its digest checked against the catalog) -> fetch every file
into private scratch, verifying each hash -> engine restore -> event -> clean scratch.
Wrong bytes never reach the engine. (``restore --lazy``: :mod:`.restore_lazy`.)
An imported CRI-O or containerd archive is refused, naming the engine that restores it,
unless an engine is asked for (``--engine podman``).
"""

from __future__ import annotations

import time
from dataclasses import dataclass

from cryostash.engines import check_restorable
from cryostash.engines.archive_origin import RESTORED_ELSEWHERE
from cryostash.errors import UsageError
from cryostash.repository import Repository
from cryostash.transfer import datapath
from cryostash.types import RestoreOptions, RestoreResult


@dataclass(frozen=True)
class RestoreRequest:
    """What to restore, and how.

    Attributes:
        target, name: the checkpoint.
        checkpoint_dir: the store holding it, when not the default one.
        engine_args: extra engine arguments (``--criu-opt``, common flags), verbatim.
        engine: the engine to restore with (default: the recorded one).
        container: container engines: restore as this container name or id (``--as``).
        bundle: runc: the OCI bundle to restore into.
        allow: what a re-created container may get beyond a safe default
            (:data:`cryostash.types.ALLOWABLE`).
    """

    target: str
    name: str
    checkpoint_dir: str | None = None
    engine_args: tuple[str, ...] = ()
    engine: str | None = None
    container: str | None = None
    bundle: str | None = None
    allow: tuple[str, ...] = ()


def restore(repo: Repository, request: RestoreRequest) -> RestoreResult:
    """Restore ``request.target``/``request.name`` (see the module docstring); the restored
    root PID, the engine's duration and details, and the download stats
    (:func:`cryostash.transfer.datapath.restore_stats`).

    Raises:
        CheckpointNotFound: ``checkpoint NAME does not exist for container TARGET``.
        UsageError: ``request.engine`` is a built-in engine other than the one that made
            the checkpoint (:func:`cryostash.engines.check_restorable`), before any download.
        IntegrityError: a stored object is corrupt or missing (names file and blob).
        EngineError: the engine could not restore.
        UsageError: an imported CRI-O / containerd archive and no ``engine`` asked for.
    """
    target, name = request.target, request.name
    info = repo.checkpoint(target, name, request.checkpoint_dir)
    if request.engine:  # an engine that cannot read it: refused before any download
        check_restorable(info.engine, request.engine, f"{target}/{name}")
    if request.engine is None and info.engine in RESTORED_ELSEWHERE:
        maker = RESTORED_ELSEWHERE[info.engine]
        raise UsageError(
            f"{target}/{name} is an imported {maker} checkpoint archive: {maker} restores it "
            f"(on a node running {maker}), no engine here does. `cryostash export {target} "
            f"{name} -o FILE` gives the archive back for it; `--engine podman` tries Podman"
        )
    store = repo.store(request.checkpoint_dir)
    manifest = repo.manifest(store, info)
    eng = repo.engine(request.engine or info.engine)
    settings = repo.settings
    t0 = time.monotonic()
    with repo.scratch(f"restore-{target}-{name}") as image_dir:
        down = datapath.unpack_image(
            settings, store, manifest.files, image_dir, jobs=repo.jobs,
            callback=repo.progress_for("download"),
        )
        t1 = time.monotonic()
        result = eng.restore(
            image_dir,
            RestoreOptions(
                manifest.root_pid, tuple(request.engine_args), container=request.container,
                bundle=request.bundle, allow=frozenset(request.allow), notify=repo.notify,
            ),
        )
        restore_s = time.monotonic() - t1
    cached = datapath.cache_for(settings, store) is not None
    stats = datapath.restore_stats(down, restore_s, time.monotonic() - t0, cached)
    repo.catalog.record_event(
        host=settings.host,
        action="restore",
        target=target,
        name=name,
        store_url=store.url,
        detail={"pid": result.pid, **stats},
    )
    return RestoreResult(
        pid=result.pid, duration_s=result.duration_s, details={**dict(result.details), **stats}
    )
