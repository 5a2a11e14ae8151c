"""Plain, frozen value types shared by every layer. No behaviour, no I/O."""

from __future__ import annotations

import enum
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any


class Status(enum.StrEnum):
    """Life cycle of a checkpoint row in the catalog."""

    PENDING = "pending"  #: reserved, being dumped/uploaded; invisible to readers
    COMMITTED = "committed"  #: manifest written and catalog row committed: visible


@dataclass(frozen=True)
class FileEntry:
    """One file of a checkpoint's image directory, as the manifest records it.

    Attributes:
        path: relative POSIX path inside the image directory (no ``..``, no leading ``/``).
        mode: permission bits (``st_mode & 0o7777``).
        size: size in bytes.
        blobs: ordered BLAKE3 hex digests of the file's chunks (of their plain bytes),
            whose contents, concatenated, rebuild the file. Empty for an empty file. The
            same digest may appear several times (repeated content, e.g. zero pages).
        digest: BLAKE3 hex digest of the whole file.
        chunk_sizes: plain size of each chunk, parallel to ``blobs`` (they add up to
            ``size``). May be left empty for a file of at most one chunk: the manifest
            then fills in ``(size,)``.
    """

    path: str
    mode: int
    size: int
    blobs: tuple[str, ...]
    digest: str
    chunk_sizes: tuple[int, ...] = ()


@dataclass(frozen=True)
class Availability:
    """Whether an engine can run here, and why not."""

    ok: bool
    version: str | None = None
    path: str | None = None
    reason: str | None = None
    features: Mapping[str, bool] = field(default_factory=dict)


@dataclass(frozen=True)
class DumpOptions:
    """What the manager asks of an engine's dump.

    Attributes:
        leave_running: keep the process running after the dump.
        extra_args: engine-specific extra arguments (``--criu-opt``), passed verbatim.
    """

    leave_running: bool = False
    extra_args: tuple[str, ...] = ()


@dataclass(frozen=True)
class DumpStats:
    """What an engine reports of a dump.

    Attributes:
        duration_s: wall time of the whole dump, seconds.
        root_pid: PID of the root of the dumped process tree (restore reuses it).
        engine_version: version string of the engine (e.g. CRIU ``4.2``).
        details: engine statistics (e.g. CRIU's ``frozen_time`` in microseconds).
        host, kernel: where the dump was made when not on this host (an imported archive:
            its node's name and ``uname -r``); None: here.
    """

    duration_s: float
    root_pid: int | None = None
    engine_version: str | None = None
    details: Mapping[str, Any] = field(default_factory=dict)
    host: str | None = None
    kernel: str | None = None


#: What ``restore --allow`` may let a re-created container have (docker engine).
ALLOWABLE = frozenset(
    {"privileged", "host-mounts", "capabilities", "devices", "host-namespaces", "security-opt"}
)


@dataclass(frozen=True)
class RestoreOptions:
    """What the manager asks of an engine's restore.

    Attributes:
        root_pid: PID the dumped tree had; the engine waits until it is free.
        extra_args: engine-specific extra arguments, passed verbatim.
        wait_for_pid_s: how long to wait for ``root_pid`` to be reaped.
        container: container engines: restore as this container name or id instead
            of the recorded one (``--as``). Engines without containers refuse it.
        bundle: runc: the OCI bundle folder to restore into (``--bundle``; required:
            the path a checkpoint records is never used unconfirmed). Others refuse it.
        allow: docker: what a re-created container may get beyond a safe default
            (``--allow``: ``privileged``, ``host-mounts``, ``capabilities``, ``devices``,
            ``host-namespaces``, ``security-opt``).
        notify: called with one line for people when the engine has to wait (for
            ``root_pid`` to be free), before it waits; engines never print.
    """

    root_pid: int | None = None
    extra_args: tuple[str, ...] = ()
    wait_for_pid_s: float = 10.0
    container: str | None = None
    bundle: str | None = None
    allow: frozenset[str] = frozenset()
    notify: Callable[[str], None] | None = field(default=None, compare=False, repr=False)


@dataclass(frozen=True)
class RestoreResult:
    """What an engine reports of a restore: the restored root PID and timings."""

    pid: int
    duration_s: float
    details: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class CheckpointInfo:
    """A checkpoint as the catalog knows it.

    ``store_url`` is the root URL of the store holding it (credentials stripped).
    ``stats`` holds the dump and upload statistics recorded at commit.
    """

    id: int
    store_url: str
    target: str
    name: str
    status: Status
    host: str
    engine: str
    engine_version: str | None
    created_at: datetime
    committed_at: datetime | None
    size_bytes: int
    labels: Mapping[str, str]
    stats: Mapping[str, Any]
    lease_expires_at: datetime | None = None
    manifest_digest: str | None = None  #: BLAKE3 of the manifest bytes, set at commit
    #: The creator of a PENDING row (None once committed, or when not recorded): its
    #: PID, its identity on its host (:mod:`cryostash.repository.reservations`), its scratch lock.
    owner_pid: int | None = None
    owner_start: str | None = None
    owner_lock: str | None = None

    def summary(self) -> dict[str, Any]:
        """The JSON object ``ls --json`` prints for this checkpoint."""
        return {
            "name": self.name,
            "target": self.target,
            "status": self.status.value,
            "created_at": self.created_at.isoformat(),
            "host": self.host,
            "engine": self.engine,
            "size_bytes": self.size_bytes,
            "labels": dict(self.labels),
        }


@dataclass(frozen=True)
class CheckpointFilter:
    """Which committed checkpoints a listing (``ls``) or ``--latest`` considers.

    Every given criterion must hold: each of ``labels`` (key and value equal), ``host``
    (the host that created it), ``since`` (created at or after this tz-aware time).
    The empty filter matches everything.
    """

    labels: Mapping[str, str] = field(default_factory=dict)
    host: str | None = None
    since: datetime | None = None

    def __bool__(self) -> bool:
        return bool(self.labels) or self.host is not None or self.since is not None

    def describe(self) -> str:
        """``label k=v, host h, since 2026-...``: the criteria, for messages ("" if none)."""
        parts = [f"label {k}={v}" for k, v in sorted(self.labels.items())]
        if self.host is not None:
            parts.append(f"host {self.host}")
        if self.since is not None:
            parts.append(f"since {self.since.isoformat()}")
        return ", ".join(parts)


@dataclass(frozen=True)
class Event:
    """One entry of the event log: something a host did to a checkpoint.

    ``action`` is one of ``checkpoint`` (a create), ``restore``, ``delete`` (an rm).
    """

    id: int
    time: datetime
    host: str
    action: str
    target: str
    name: str
    detail: Mapping[str, Any] = field(default_factory=dict)
    store_url: str | None = None

    def as_dict(self) -> dict[str, Any]:
        """The JSON object ``events --json`` prints."""
        return {
            "id": self.id,
            "time": self.time.isoformat(),
            "host": self.host,
            "action": self.action,
            "target": self.target,
            "name": self.name,
            "store": self.store_url,
            "detail": dict(self.detail),
        }
