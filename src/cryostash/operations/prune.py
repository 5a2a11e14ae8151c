"""``prune``: apply retention policies to the checkpoints of a store.

:func:`prune` works on one store of a repository, target by target (a policy never
looks across targets; see :mod:`cryostash.retention` for the rules):

1. The policy of a target is the one given, else the target's default policy stored in
   the catalog (:mod:`cryostash.catalog.policies`); a target with neither is left alone.
   With ``save_default`` the given policy first becomes the target's default (what
   ``create --keep-last N`` does).
2. The policy decides on the target's COMMITTED checkpoints (PENDING ones are never
   touched): kept (with reasons) and removed.
3. Each removed checkpoint is removed exactly as ``rm`` removes one
   (:func:`cryostash.repository.cleanup.remove_checkpoint`): catalog row first, then its
   manifest, then the blobs no other checkpoint (committed or pending) refers to; a blob
   shared with a kept checkpoint stays. Event ``delete`` with ``{"by": "prune"}``.

``dry_run`` changes nothing (no row, no object, no default): the report says what would
be removed and freed.

Concurrency: the decision is taken on the checkpoints committed when prune lists them;
a checkpoint committed afterwards can only push the others further out of a keep-last
or keep-within window, never bring one back in, so removing the decided ones stays
right. A checkpoint removed meanwhile by someone else is skipped. A storage or catalog
error stops prune: what was removed stays removed (each removal is complete or left
to ``gc``, as for ``rm``); running it again finishes.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from cryostash.catalog.policies import RetentionCatalog
from cryostash.errors import CheckpointNotFound, UsageError
from cryostash.names import validate_target
from cryostash.repository import Repository
from cryostash.repository.cleanup import remove_checkpoint
from cryostash.retention import Kept, Policy, checkpoint_time
from cryostash.types import CheckpointInfo

#: Where the policy of a target came from.
GIVEN = "given"
DEFAULT = "default"

_NO_RULE = (
    "no retention policy for container {target}: give --keep-last N, --keep-within "
    "DURATION or --keep-label KEY=VALUE (create ... --keep-last N also stores it as the "
    "target's default)"
)


@dataclass(frozen=True)
class TargetPrune:
    """What prune did (or would do) to one target.

    ``policy`` is None (and both lists empty) for a target left alone: no policy given
    and no default stored. ``source`` is :data:`GIVEN`, :data:`DEFAULT` or None.
    """

    target: str
    policy: Policy | None
    source: str | None
    kept: tuple[Kept, ...] = ()
    removed: tuple[CheckpointInfo, ...] = ()

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready form."""
        return {
            "target": self.target,
            "policy": self.policy.to_dict() if self.policy is not None else None,
            "policy_source": self.source,
            "kept": [
                {"name": k.checkpoint.name, "reasons": list(k.reasons)} for k in self.kept
            ],
            "removed": [{"name": info.name} for info in self.removed],
        }


@dataclass(frozen=True)
class PruneRequest:
    """What to prune, and how.

    Attributes:
        target: only this target (default: every target with committed checkpoints).
        policy: the rules (default: each target's stored default).
        checkpoint_dir: the store (default: the repository's default store).
        dry_run: say what would be removed, change nothing.
        save_default: first store ``policy`` as ``target``'s default (needs both, and a
            policy that always keeps the newest checkpoint: a keep-last or keep-within
            rule). Not in a dry run.
    """

    target: str | None = None
    policy: Policy | None = None
    checkpoint_dir: str | None = None
    dry_run: bool = False
    save_default: bool = False


@dataclass(frozen=True)
class PruneReport:
    """The result of :func:`prune`.

    ``blobs_deleted``: blobs deleted from the store (dry run: that would be, as the
    catalog stands); ``bytes_freed``: their plain (uncompressed) size.
    """

    store_url: str
    dry_run: bool
    targets: tuple[TargetPrune, ...]
    blobs_deleted: int
    bytes_freed: int

    @property
    def kept(self) -> int:
        """How many checkpoints the policies keep."""
        return sum(len(t.kept) for t in self.targets)

    @property
    def removed(self) -> int:
        """How many checkpoints were (dry run: would be) removed."""
        return sum(len(t.removed) for t in self.targets)

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready form (``prune --json``)."""
        return {
            "store": self.store_url,
            "dry_run": self.dry_run,
            "targets": [t.as_dict() for t in self.targets],
            "kept": self.kept,
            "removed": self.removed,
            "blobs_deleted": self.blobs_deleted,
            "bytes_freed": self.bytes_freed,
        }


def prune(repo: Repository, request: PruneRequest) -> PruneReport:
    """Apply the request's policy (else each target's default) to its target (else every
    target with committed checkpoints) of its store (see the module docstring).

    Raises:
        InvalidName: bad target.
        UsageError: a target given without a policy and it has no default (the message
            names the flags); ``save_default`` without target and policy, or with a
            policy that could remove the newest checkpoint.
        StorageError, CatalogError: a removal failed (see the module docstring).
    """
    target, policy, dry_run = request.target, request.policy, request.dry_run
    checkpoint_dir, save_default = request.checkpoint_dir, request.save_default
    if target is not None:
        validate_target(target)
    if save_default:
        _check_saveable(target, policy)
    store = repo.store(checkpoint_dir)
    store.unlock()  # an encrypted store's key before anything (KeyRequired, WrongKey)
    retention = RetentionCatalog(repo.catalog)
    if save_default and not dry_run and target is not None and policy is not None:
        retention.set_default(
            store_url=store.url, target=target, policy=policy, host=repo.host
        )
    checkpoints = repo.catalog.list(store.url, target)
    by_target: dict[str, list[CheckpointInfo]] = {}
    for info in checkpoints:
        by_target.setdefault(info.target, []).append(info)
    defaults = retention.defaults(store.url) if policy is None else {}
    if target is not None and policy is None and target not in defaults:
        raise UsageError(_NO_RULE.format(target=target))
    plans: list[TargetPrune] = []
    for name in [target] if target is not None else sorted(by_target):
        chosen, source = (policy, GIVEN) if policy is not None else (None, None)
        if chosen is None and name in defaults:
            chosen, source = defaults[name].policy, DEFAULT
        if chosen is None:
            plans.append(TargetPrune(name, None, None))
            continue
        decision = chosen.apply(by_target.get(name, []))
        plans.append(TargetPrune(name, chosen, source, decision.kept, decision.removed))
    doomed = [info for plan in plans for info in plan.removed]
    freed = retention.exclusive_blobs(store.url, [i.id for i in doomed]) if doomed else {}
    if dry_run:
        deleted: Iterable[str] = freed
    else:
        deleted = _remove(repo, doomed, checkpoint_dir)
    digests = set(deleted)
    return PruneReport(
        store_url=store.url,
        dry_run=dry_run,
        targets=tuple(plans),
        blobs_deleted=len(digests),
        bytes_freed=sum(freed.get(d, 0) for d in digests),
    )


def _check_saveable(target: str | None, policy: Policy | None) -> None:
    if target is None or policy is None:
        raise UsageError("a default retention policy needs a target and a policy")
    if not policy.keeps_newest:
        raise UsageError(
            "a default retention policy applied at create needs --keep-last N or "
            "--keep-within DURATION (with --keep-label alone the new checkpoint itself "
            "could be pruned)"
        )


def _remove(
    repo: Repository, doomed: list[CheckpointInfo], checkpoint_dir: str | None
) -> list[str]:
    """Remove ``doomed`` oldest first, as ``rm`` does; the digests of the blobs deleted."""
    deleted: list[str] = []
    for info in sorted(doomed, key=lambda i: (checkpoint_time(i), i.id)):
        try:
            deleted.extend(remove_checkpoint(repo, info, checkpoint_dir, by="prune"))
        except CheckpointNotFound:
            continue  # removed meanwhile by someone else
    return deleted
