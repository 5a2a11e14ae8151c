"""The manager layer: :class:`CheckpointManager`, the one orchestrator of create, restore,
rm, list and inspect (:mod:`~cryostash.manager.manager`), the :class:`Repository` every
verb works on (:mod:`~cryostash.manager.repository`), what a failed create undoes
(:mod:`~cryostash.manager.cleanup`) and what ``inspect`` shows
(:mod:`~cryostash.manager.inspection`)."""

from cryostash.manager.manager import CheckpointManager, manager_of, repository_of
from cryostash.manager.repository import Repository

__all__ = ["CheckpointManager", "Repository", "manager_of", "repository_of"]
