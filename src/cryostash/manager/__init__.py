"""The manager layer: :class:`CheckpointManager`, the one orchestrator of create, restore,
rm, list and inspect (:mod:`~cryostash.manager.manager`), what a failed create undoes
(:mod:`~cryostash.manager.cleanup`) and what ``inspect`` shows
(:mod:`~cryostash.manager.inspection`)."""

from cryostash.manager.manager import CheckpointManager

__all__ = ["CheckpointManager"]
