"""``migrate TARGET --receive NAME``: the receiving end of a migration's destination command.

:class:`cryostash.operations.destination.CommandDestination` starts it (through ``--to``) on
the destination host and speaks to it in JSON lines (the protocol is described there).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import IO

from cryostash.operations.destination import GO, READY
from cryostash.operations.destination_local import require_lazy, restore_object
from cryostash.repository import Repository
from cryostash.repository.lazy_helper import prepare_lazy


@dataclass(frozen=True)
class ReceiveRequest:
    """The checkpoint to receive and how to restore it.

    Attributes:
        target, name: the checkpoint (made by the source once this end is ready).
        checkpoint_dir: the store, when not the default one.
        restore_args: ``restore`` flags (``--tcp-established``...), verbatim.
        lazy_engine: restore lazily with this engine (``--lazy --engine ENGINE``).
        allow: the ``restore --allow`` words (what a re-created container may get).
    """

    target: str
    name: str
    checkpoint_dir: str | None = None
    restore_args: tuple[str, ...] = ()
    lazy_engine: str | None = None
    allow: tuple[str, ...] = ()


def receive(repo: Repository, request: ReceiveRequest, stdin: IO[str], stdout: IO[str]) -> bool:
    """The receiving end of :class:`~cryostash.operations.destination.CommandDestination`.

    Checks that this host may restore from the store (a writer key is refused), connects
    to the catalog and the store, says ``{"ready": true, ...}`` on ``stdout``, waits for a
    line on ``stdin``: ``go`` restores ``target``/``name`` and prints the ``restore
    --json`` object (True); anything else or end of input returns False.

    With ``lazy_engine`` it first checks that this host can restore lazily with that
    engine (:func:`~cryostash.operations.destination_local.require_lazy`: CRIU,
    userfaultfd, FUSE), failing before it says it is ready (so the source never stops the
    process for nothing), and starts the lazy restore's helper (its start-up is not
    downtime either); ``go`` then restores lazily and prints the ``restore --lazy --json``
    object once the process runs; the detached helper serves its pages.

    Raises:
        whatever :func:`~cryostash.operations.restore.restore` (or opening the catalog)
        raises; RestoreKeyRequired: a writer key; UsageError / EngineError: a lazy
        restore cannot run here.
    """
    target, name, checkpoint_dir = request.target, request.name, request.checkpoint_dir
    store = repo.store(checkpoint_dir)
    store.unlock(restore=True)  # restores here: a writer key is refused (exit 12)
    repo.catalog  # noqa: B018 (connects now, not in the downtime)
    store.manifests.exists(target, name)  # loads and reaches the store
    launch = None
    if request.lazy_engine is not None:
        require_lazy(repo, request.lazy_engine)
        launch = prepare_lazy(  # the helper's start-up is not downtime either
            repo, target, name, engine=request.lazy_engine,
            checkpoint_dir=checkpoint_dir, engine_args=request.restore_args,
        )
    stdout.write(json.dumps({READY: True, "host": repo.host}) + "\n")
    stdout.flush()
    if stdin.readline().strip() != GO:
        if launch is not None:
            launch.cancel()
        return False
    restored = restore_object(
        repo, target, name, checkpoint_dir, request.restore_args,
        lazy_engine=request.lazy_engine, launch=launch, allow=request.allow,
    )
    stdout.write(json.dumps(restored, default=str) + "\n")
    stdout.flush()
    return True
