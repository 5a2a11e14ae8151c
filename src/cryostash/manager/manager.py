"""``CheckpointManager``: the library's front door to the checkpoint verbs.

A thin facade: each method builds the request of one operation
(:mod:`cryostash.operations`) and runs it on the manager's
:class:`~cryostash.repository.Repository` (``mgr.repository``); the policy lives in the
operations, the shared lookups in the repository. Not thread-safe; use one per thread.
Close it (or use it as a context manager) to release the catalog connection.
"""

from __future__ import annotations

import builtins
from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any, Self

from cryostash.config import Settings
from cryostash.operations.create import CreateRequest
from cryostash.operations.create import create as create_checkpoint
from cryostash.operations.events import EventsRequest
from cryostash.operations.events import events as read_events
from cryostash.operations.inspect import Inspection, InspectRequest
from cryostash.operations.inspect import inspect as inspect_checkpoint
from cryostash.operations.ls import LsRequest, ls
from cryostash.operations.prefetch import PrefetchRequest
from cryostash.operations.prefetch import prefetch as prefetch_checkpoint
from cryostash.operations.restore import RestoreRequest
from cryostash.operations.restore import restore as restore_checkpoint
from cryostash.operations.rm import RmRequest, rm
from cryostash.repository import Repository

if TYPE_CHECKING:
    from cryostash.catalog import Catalog
    from cryostash.engines.base import Engine
    from cryostash.store import Store
    from cryostash.transfer.baseline import Baseline
    from cryostash.transfer.progress import Progress
    from cryostash.types import CheckpointFilter, CheckpointInfo, Event, RestoreResult


class CheckpointManager:
    """Create, list, inspect, restore and remove checkpoints of one set of settings.

    The arguments are the repository's (see :class:`~cryostash.repository.Repository`);
    its settings, engines, manifests and scratch are ``mgr.repository``'s.
    """

    def __init__(
        self,
        settings: Settings,
        *,
        catalog: Catalog | None = None,
        jobs: int = 4,
        progress: Callable[[str], Progress | None] | None = None,
        notice: Callable[[str], None] | None = None,
    ) -> None:
        self.repository = Repository(
            settings, catalog=catalog, jobs=jobs, progress=progress, notice=notice
        )

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
        """:func:`cryostash.operations.create.create` (``engine``: a name or an engine)."""
        request = CreateRequest(
            target, name, locator, engine if isinstance(engine, str) else engine.name,
            leave_running, checkpoint_dir, dict(labels or {}), tuple(engine_args),
        )
        own = None if isinstance(engine, str) else engine
        return create_checkpoint(self.repository, request, engine=own, baseline=baseline)

    def list(
        self,
        target: str | None = None,
        checkpoint_dir: str | None = None,
        filters: CheckpointFilter | None = None,
    ) -> builtins.list[CheckpointInfo]:
        """Committed checkpoints matching ``filters``, by target then name (``ls``)."""
        request = LsRequest(target, checkpoint_dir, filters)
        return builtins.list(ls(self.repository, request).checkpoints)

    def latest(
        self,
        target: str,
        filters: CheckpointFilter | None = None,
        checkpoint_dir: str | None = None,
    ) -> CheckpointInfo:
        """The newest committed checkpoint of ``target`` matching ``filters`` (``--latest``;
        :meth:`Repository.latest <cryostash.repository.Repository.latest>`)."""
        return self.repository.latest(target, filters, checkpoint_dir)

    def get(self, target: str, name: str, checkpoint_dir: str | None = None) -> CheckpointInfo:
        """The committed checkpoint ``target``/``name``, or CheckpointNotFound."""
        return self.repository.checkpoint(target, name, checkpoint_dir)

    def inspect(
        self, target: str, name: str, checkpoint_dir: str | None = None
    ) -> Inspection:
        """The catalog row and the verified manifest of ``target``/``name``."""
        request = InspectRequest(target, name, checkpoint_dir)
        return inspect_checkpoint(self.repository, request)

    def events(self, target: str | None = None, limit: int | None = None) -> builtins.list[Event]:
        """The event log, oldest first."""
        return builtins.list(read_events(self.repository, EventsRequest(target, limit)))

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
        """:func:`cryostash.operations.restore.restore`: fetch, verify, restore."""
        request = RestoreRequest(
            target, name, checkpoint_dir, tuple(engine_args), engine, container, bundle,
            tuple(allow),
        )
        return restore_checkpoint(self.repository, request)

    def prefetch(
        self, target: str, name: str, checkpoint_dir: str | None = None
    ) -> dict[str, Any]:
        """:func:`cryostash.operations.prefetch.prefetch`: fill the local chunk cache."""
        request = PrefetchRequest(target, name, checkpoint_dir)
        return prefetch_checkpoint(self.repository, request)

    def remove(self, target: str, name: str, checkpoint_dir: str | None = None) -> None:
        """:func:`cryostash.operations.rm.rm`: the checkpoint and the blobs only it used."""
        rm(self.repository, RmRequest(target, name, checkpoint_dir))
