"""``prefetch``: fill the local chunk cache with a checkpoint's chunks ahead of a restore.

On the host that will restore, while the process still runs where it was checkpointed:
every chunk of the checkpoint that the cache lacks is downloaded, verified and cached, so
that the restore downloads nothing. A store on this host's disk needs nothing.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from cryostash.repository import Repository
from cryostash.transfer import datapath


@dataclass(frozen=True)
class PrefetchRequest:
    """The checkpoint to prefetch, in the store ``checkpoint_dir`` (default: the default)."""

    target: str
    name: str
    checkpoint_dir: str | None = None


def prefetch(repo: Repository, request: PrefetchRequest) -> dict[str, Any]:
    """Download the chunks of the checkpoint that the local chunk cache lacks, verified,
    into the cache; the stats (JSON-ready).

    A store on the local disk needs nothing (its objects are local): the stats are zeros
    with ``skipped: "local store"`` and no event is recorded. Otherwise the stats of
    :func:`cryostash.transfer.datapath.prefetch_image` are returned (``warning`` is set
    when the cache bound cannot hold the checkpoint) and recorded in a ``prefetch`` event.

    Raises:
        CheckpointNotFound: ``checkpoint NAME does not exist for container TARGET``.
        UsageError: the chunk cache is turned off.
        IntegrityError: a stored object is corrupt or missing (names file and blob; it is
            not cached).
    """
    info = repo.checkpoint(request.target, request.name, request.checkpoint_dir)
    store = repo.store(request.checkpoint_dir)
    if not store.remote:
        return datapath.prefetch_skipped("local store")
    datapath.require_cache(repo.settings, store)  # before anything is read
    manifest = repo.manifest(store, info)
    stats = datapath.prefetch_image(
        repo.settings, store, manifest.files, jobs=repo.jobs,
        callback=repo.progress_for("download"),
    )
    repo.catalog.record_event(
        host=repo.host,
        action="prefetch",
        target=request.target,
        name=request.name,
        store_url=store.url,
        detail=stats,
    )
    return stats
