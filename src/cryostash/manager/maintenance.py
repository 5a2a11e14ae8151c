"""The maintenance verbs for library users, with keyword arguments: :func:`collect_garbage`,
:func:`verify_store`, :func:`rebuild_catalog` and :func:`prune_checkpoints` each build the
request of one operation (:mod:`cryostash.operations`) and run it on a repository
(``mgr.repository``)."""

from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING

from cryostash.operations.gc import DEFAULT_GRACE_S, GcReport, GcRequest, gc
from cryostash.operations.prune import PruneReport, PruneRequest, prune
from cryostash.operations.rebuild import RebuildReport, RebuildRequest, rebuild
from cryostash.operations.verify import VerifyReport, VerifyRequest, verify
from cryostash.repository import Repository

if TYPE_CHECKING:
    from cryostash.operations.verify_subset import Subset
    from cryostash.retention import Policy


def collect_garbage(
    repo: Repository,
    *,
    grace_s: float = DEFAULT_GRACE_S,
    dry_run: bool = False,
    checkpoint_dir: str | None = None,
    now: datetime | None = None,
) -> GcReport:
    """:func:`cryostash.operations.gc.gc` (``now``: the current time, for tests)."""
    return gc(repo, GcRequest(grace_s, dry_run, checkpoint_dir), now=now)


def verify_store(
    repo: Repository,
    target: str | None = None,
    name: str | None = None,
    *,
    read_data: bool = False,
    checkpoint_dir: str | None = None,
    subset: Subset | str | None = None,
    seed: int | None = None,
) -> VerifyReport:
    """:func:`cryostash.operations.verify.verify` (``subset``: ``N%``, ``K/M``, or one
    parsed by :func:`~cryostash.operations.verify_subset.parse_subset`)."""
    text = subset if subset is None or isinstance(subset, str) else subset.text
    request = VerifyRequest(target, name, read_data, checkpoint_dir, text, seed)
    return verify(repo, request)


def rebuild_catalog(repo: Repository, *, checkpoint_dir: str | None = None) -> RebuildReport:
    """:func:`cryostash.operations.rebuild.rebuild` (``catalog rebuild``)."""
    return rebuild(repo, RebuildRequest(checkpoint_dir))


def prune_checkpoints(
    repo: Repository,
    target: str | None = None,
    policy: Policy | None = None,
    *,
    checkpoint_dir: str | None = None,
    dry_run: bool = False,
    save_default: bool = False,
) -> PruneReport:
    """:func:`cryostash.operations.prune.prune`."""
    return prune(repo, PruneRequest(target, policy, checkpoint_dir, dry_run, save_default))
