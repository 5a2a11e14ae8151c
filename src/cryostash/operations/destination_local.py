"""The destination of a migration that is this host, in this process
(:class:`LocalDestination`), and what this host's side of a migration runs: the restore
as the ``restore --json`` object (:func:`restore_object`, also the receiving end's), and
the check that a lazy restore can run here (:func:`require_lazy`). The protocol and the
destination reached by a command: :mod:`cryostash.operations.destination`.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from cryostash.engines.criu_lazy import require_lazy_support
from cryostash.errors import EngineError
from cryostash.operations.destination import PendingRestore
from cryostash.operations.lazy_check import check_lazy
from cryostash.operations.prefetch import PrefetchRequest, prefetch
from cryostash.operations.restore import RestoreRequest, restore
from cryostash.operations.restore_lazy import LazyRestoreRequest, restore_lazy
from cryostash.repository import Repository
from cryostash.repository.lazy_helper import LazyLaunch, prepare_lazy


class LocalDestination:
    """This host, in this process, through ``repo`` (its settings: cache, scratch)."""

    def __init__(self, repo: Repository) -> None:
        self.repo = repo

    def describe(self) -> str:
        """``this host``."""
        return "this host"

    def prefetch(self, target: str, name: str, checkpoint_dir: str | None) -> dict[str, Any]:
        """:func:`cryostash.operations.prefetch.prefetch`."""
        return dict(prefetch(self.repo, PrefetchRequest(target, name, checkpoint_dir)))

    def check_lazy(self, engine: str) -> None:
        """:func:`require_lazy` here."""
        require_lazy(self.repo, engine)

    def prepare_restore(
        self,
        target: str,
        name: str,
        checkpoint_dir: str | None,
        args: Sequence[str],
        *,
        lazy_engine: str | None = None,
        allow: Sequence[str] = (),
    ) -> PendingRestore:
        """Nothing to start: :func:`cryostash.operations.restore.restore` when told to go.
        With ``lazy_engine``, the lazy restore's helper is started now and restores when
        told to go (:func:`~cryostash.repository.lazy_helper.prepare_lazy`, which closes
        the repository's catalog connection before it forks; the next use opens it again)."""
        return _LocalRestore(
            self.repo, target, name, checkpoint_dir, tuple(args), lazy_engine, tuple(allow)
        )


class _LocalRestore:
    def __init__(
        self,
        repo: Repository,
        target: str,
        name: str,
        checkpoint_dir: str | None,
        args: tuple[str, ...],
        lazy_engine: str | None,
        allow: tuple[str, ...] = (),
    ) -> None:
        self._call = (repo, target, name, checkpoint_dir, args)
        self._lazy_engine = lazy_engine
        self._allow = allow
        self._launch: LazyLaunch | None = None
        if lazy_engine is not None:
            self._launch = prepare_lazy(
                repo, target, name, engine=lazy_engine,
                checkpoint_dir=checkpoint_dir, engine_args=args,
            )

    def go(self) -> dict[str, Any]:
        launch, self._launch = self._launch, None
        return restore_object(
            *self._call, lazy_engine=self._lazy_engine, launch=launch, allow=self._allow
        )

    def cancel(self) -> None:
        if self._launch is not None:
            self._launch.cancel()
            self._launch = None


def restore_object(
    repo: Repository,
    target: str,
    name: str,
    checkpoint_dir: str | None,
    args: Sequence[str],
    *,
    lazy_engine: str | None = None,
    launch: LazyLaunch | None = None,
    allow: Sequence[str] = (),
) -> dict[str, Any]:
    """:func:`~cryostash.operations.restore.restore`, as the object ``restore --json``
    prints; with ``lazy_engine``, :func:`~cryostash.operations.restore_lazy.restore_lazy`
    with that engine (the object ``restore --lazy --json`` prints; it returns once the
    process runs), or with a prepared ``launch``
    (:func:`~cryostash.repository.lazy_helper.prepare_lazy`), its ``go``. ``allow``:
    the ``restore --allow`` words."""
    if launch is not None:
        result = launch.go()
    elif lazy_engine is not None:
        result = restore_lazy(
            repo, LazyRestoreRequest(target, name, checkpoint_dir, lazy_engine, tuple(args))
        )
    else:
        result = restore(
            repo, RestoreRequest(target, name, checkpoint_dir, tuple(args), allow=tuple(allow))
        )
    return {
        "pid": result.pid,
        "target": target,
        "name": name,
        "duration_s": result.duration_s,
        **dict(result.details),
    }


def require_lazy(repo: Repository, engine: str) -> None:
    """Raise unless ``engine`` can restore lazily on this host: the criu engine, CRIU >=
    4.2 with userfaultfd (:func:`~cryostash.engines.criu_lazy.lazy_support`) and a FUSE
    mount of cryostash's own (probed, as ``doctor`` does:
    :func:`cryostash.operations.lazy_check.check_lazy`). Runs nothing else.

    Raises:
        UsageError: ``lazy restore is not supported by ENGINE`` (not criu).
        EngineError: no CRIU >= 4.2, no userfaultfd, or no FUSE mount.
    """
    require_lazy_support(repo.engine(engine))
    probed = check_lazy(repo.settings)
    if not probed.ok:
        raise EngineError(probed.error or "lazy restore cannot run on this host")
