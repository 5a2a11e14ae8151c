"""The ``Engine`` interface: produce and consume a checkpoint *directory*.

An engine never touches the store or the catalog. The manager hands it a private,
empty scratch directory to dump into, and a directory whose every file has been
verified against its hash to restore from.
"""

from __future__ import annotations

from pathlib import Path
from typing import Protocol, runtime_checkable

from cryostash.types import Availability, DumpOptions, DumpStats, RestoreOptions, RestoreResult


@runtime_checkable
class Engine(Protocol):
    """A checkpoint engine (CRIU on a process tree, a container runtime, ...).

    Implementations are registered under the entry-point group ``cryostash.engines``
    and are constructed with no arguments or with keyword ``criu_path``.
    """

    #: Short name recorded in the catalog (``criu``, ``runc``, ...).
    name: str

    def available(self) -> Availability:
        """Say whether the engine can run here (binary found, version, checks).

        Never raises for an unavailable engine: returns ``ok=False`` with a reason.
        """
        ...

    def dump(self, locator: str, image_dir: Path, options: DumpOptions) -> DumpStats:
        """Checkpoint what ``locator`` names into ``image_dir``: a PID for CRIU, a
        container name or id for the container engines (``runc``, ``podman``, ``docker``).

        ``image_dir`` exists, is empty and private (mode 0700). On success it holds
        every file needed for restore and nothing else the engine does not need
        (logs may stay). Without ``options.leave_running`` the process is gone when
        this returns.

        Raises:
            EngineError: the dump failed; the message carries the reason (for CRIU,
                the tail of its log). The caller removes ``image_dir``.
            UsageError: ``locator`` is not something this engine can dump.
        """
        ...

    def restore(self, image_dir: Path, options: RestoreOptions) -> RestoreResult:
        """Restore from ``image_dir`` (detached from the caller) and return its root PID
        (a container's init). ``image_dir`` is writable scratch, removed afterwards.

        Raises:
            UsageError: an option does not apply to this engine (e.g. ``bundle``).
            EngineError: the restore failed; the message carries the reason.
        """
        ...
