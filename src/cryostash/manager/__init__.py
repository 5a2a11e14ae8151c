"""The library's front door (a sibling of the command line, :mod:`cryostash.cli`):
:class:`CheckpointManager` (``create``, ``restore``, ``rm``, ``list``, ``inspect``...) and
the maintenance functions (:mod:`~cryostash.manager.maintenance`: ``collect_garbage``,
``verify_store``, ``rebuild_catalog``, ``prune_checkpoints``), each a thin facade over one
operation (:mod:`cryostash.operations`) run on a
:class:`~cryostash.repository.Repository`."""

from cryostash.manager.manager import CheckpointManager

__all__ = ["CheckpointManager"]
