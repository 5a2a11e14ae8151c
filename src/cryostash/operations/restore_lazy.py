"""``restore --lazy``: the process runs before its memory arrives.

:func:`restore_lazy` starts the detached helper of a lazy restore
(:func:`cryostash.repository.lazy_helper.prepare_lazy`, which checks first that the engine
can restore lazily: only ``criu``, with userfaultfd) and tells it to go at once; it
returns as soon as the helper reports that the process runs (or why it could not). The
helper fetches every file but the memory pages, restores on a FUSE view of the image, then
serves and streams the pages, each chunk verified, and records the ``restore`` event when
every page is in (:mod:`cryostash.repository.lazy_session`; failures kill the restored
tree before it can read a missing page).
"""

from __future__ import annotations

import time
from dataclasses import dataclass

from cryostash.engines import check_restorable
from cryostash.engines.criu import CriuEngine
from cryostash.repository import Repository
from cryostash.repository.lazy_helper import prepare_lazy
from cryostash.types import RestoreResult


@dataclass(frozen=True)
class LazyRestoreRequest:
    """What to restore lazily.

    Attributes:
        target, name: the checkpoint.
        checkpoint_dir: the store holding it, when not the default one.
        engine: the engine (default: the recorded one; only ``criu`` restores lazily).
        engine_args: extra engine arguments, verbatim.
    """

    target: str
    name: str
    checkpoint_dir: str | None = None
    engine: str | None = None
    engine_args: tuple[str, ...] = ()


def restore_lazy(repo: Repository, request: LazyRestoreRequest) -> RestoreResult:
    """Restore ``request.target``/``request.name`` lazily; return once it runs.

    ``RestoreResult.details`` holds ``lazy``, ``helper_pid``, ``time_to_running_s``,
    ``restore_s`` (CRIU's restore) and the download stats of the eager files.

    Raises:
        CheckpointNotFound: no such checkpoint.
        UsageError: an engine other than criu (``lazy restore is not supported by ENGINE``),
            or criu for a checkpoint another built-in engine made
            (:func:`cryostash.engines.check_restorable`).
        EngineError: no userfaultfd or CRIU, or the restore failed.
        IntegrityError, StorageError, CheckpointNotFound: as a restore.
        CryostashError: the helper ended without a report (the process may run).
    """
    recorded = repo.checkpoint(request.target, request.name, request.checkpoint_dir).engine
    engine = request.engine or recorded
    if engine == CriuEngine.name:  # the others: "lazy restore is not supported by ENGINE"
        check_restorable(recorded, engine, f"{request.target}/{request.name}")
    started = time.monotonic()
    return prepare_lazy(
        repo, request.target, request.name, engine=engine,
        checkpoint_dir=request.checkpoint_dir, engine_args=request.engine_args,
    ).go(started)
