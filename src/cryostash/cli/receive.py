"""``migrate TARGET --receive NAME``: the receiving end of a migration's destination command.

:class:`cryostash.operations.destination.CommandDestination` starts it (through ``--to``) on
the destination host and speaks to it in JSON lines (the protocol is described there).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import IO, TYPE_CHECKING

from cryostash.operations.destination import GO, READY, require_lazy, restore_object

if TYPE_CHECKING:
    from cryostash.manager import CheckpointManager


def receive(
    manager: CheckpointManager,
    target: str,
    name: str,
    checkpoint_dir: str | None,
    args: Sequence[str],
    stdin: IO[str],
    stdout: IO[str],
    *,
    lazy_engine: str | None = None,
) -> bool:
    """The receiving end of :class:`~cryostash.operations.destination.CommandDestination`.

    Connects to the catalog and the store, says ``{"ready": true, ...}`` on ``stdout``,
    waits for a line on ``stdin``: ``go`` restores ``target``/``name`` and prints the
    ``restore --json`` object (True); anything else or end of input returns False.

    With ``lazy_engine`` (``--lazy --engine ENGINE``) it first checks that this host can
    restore lazily with that engine (:func:`~cryostash.operations.destination.require_lazy`:
    CRIU, userfaultfd, FUSE), failing before it says it is ready (so the source never
    stops the process for nothing); ``go`` then restores lazily and prints the ``restore
    --lazy --json`` object once the process runs; a detached helper serves its pages.

    Raises:
        whatever :meth:`CheckpointManager.restore` (or opening the catalog) raises;
        UsageError / EngineError: a lazy restore cannot run here.
    """
    manager.catalog  # noqa: B018 (connects now, not in the downtime)
    manager.store(checkpoint_dir).manifests.exists(target, name)  # loads and reaches the store
    launch = None
    if lazy_engine is not None:
        from cryostash.manager.lazy import prepare_lazy

        require_lazy(manager, lazy_engine)
        launch = prepare_lazy(  # the helper's start-up is not downtime either
            manager.repository, target, name, engine=lazy_engine,
            checkpoint_dir=checkpoint_dir, engine_args=list(args),
        )
    stdout.write(json.dumps({READY: True, "host": manager.settings.host}) + "\n")
    stdout.flush()
    if stdin.readline().strip() != GO:
        if launch is not None:
            launch.cancel()
        return False
    restored = restore_object(
        manager, target, name, checkpoint_dir, args, lazy_engine=lazy_engine, launch=launch
    )
    stdout.write(json.dumps(restored, default=str) + "\n")
    stdout.flush()
    return True
