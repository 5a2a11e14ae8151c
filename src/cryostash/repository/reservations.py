"""Who holds a reservation, whether it is still alive, and keeping one alive.

A create reserves its name with a PENDING row that records its creator
(:func:`this_process`): the host name, the PID, and ``owner_start`` =
``BOOT_ID/PIDNS/STARTTIME`` (the kernel's boot id, the inode of the PID namespace and the
start time of the process in clock ticks since boot, field 22 of ``/proc/PID/stat``), plus,
once its scratch folder exists, the path of that ``flock``-ed folder (``owner_lock``).

:func:`abandoned` decides whether a PENDING row may be settled now:

- Same host (same host name, boot id and PID namespace as this process): its creator is
  provably dead when its scratch lock is not held (the folder is gone or its lock free)
  and its PID is gone or now names another process (a different start time). Then the
  row is abandoned at once, whatever its lease.
- Otherwise (another host, another boot, a row without a recorded creator): abandoned
  once its lease has expired. A live creator renews its lease (:class:`Heartbeat`).

A live create is never judged dead: while it runs its PID exists with the same start time
(and from the dump on, its scratch lock is held).
"""

from __future__ import annotations

import contextlib
import fcntl
import logging
import os
import threading
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING

from cryostash.errors import CatalogError, CheckpointExists, CheckpointNotFound, CryostashError
from cryostash.repository import cleanup
from cryostash.store import Store
from cryostash.types import CheckpointInfo, Status

if TYPE_CHECKING:  # the catalog (SQLAlchemy) loads only when a create or gc uses it
    from cryostash.catalog import Catalog

log = logging.getLogger(__name__)

#: The heartbeat renews the lease this many times per lease period.
BEATS_PER_LEASE = 4


@dataclass(frozen=True)
class Creator:
    """This process as a reservation records it."""

    pid: int
    start: str | None  #: ``BOOT_ID/PIDNS/STARTTIME``, None where /proc cannot tell


def _read(path: str) -> str | None:
    try:
        with open(path, encoding="ascii", errors="replace") as fh:
            return fh.read().strip()
    except OSError:
        return None


def _start_ticks(pid: int) -> str | None:
    """Field 22 (``starttime``) of ``/proc/PID/stat``, None if there is no such process."""
    stat = _read(f"/proc/{pid}/stat")
    if stat is None:
        return None
    fields = stat.rpartition(")")[2].split()  # the name (field 2) may hold spaces
    return fields[19] if len(fields) > 19 else None


def _machine() -> str | None:
    """``BOOT_ID/PIDNS`` of this process (what a PID means here), None if unknown."""
    boot = _read("/proc/sys/kernel/random/boot_id")
    try:
        pidns = os.stat("/proc/self/ns/pid").st_ino
    except OSError:
        return None
    return f"{boot}/{pidns}" if boot else None


def this_process() -> Creator:
    """The identity of the calling process."""
    pid = os.getpid()
    machine, ticks = _machine(), _start_ticks(pid)
    return Creator(pid, f"{machine}/{ticks}" if machine and ticks else None)


def _lock_held(path: str) -> bool:
    """True when somebody holds the ``flock`` of the folder ``path`` (False if it is gone)."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC | os.O_NOFOLLOW)
    except OSError:
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        return True
    finally:
        os.close(fd)  # also drops the lock we may just have taken
    return False


def creator_dead(info: CheckpointInfo, host: str) -> bool:
    """True when ``info``'s creator is provably dead: it ran on this host (same host name,
    boot and PID namespace), its scratch lock is not held, and its PID is gone or reused.
    False when alive or when this host cannot tell (another host, nothing recorded)."""
    if info.status is not Status.PENDING or info.host != host:
        return False
    if info.owner_pid is None or not info.owner_start or info.owner_pid <= 0:
        return False
    machine, _, ticks = info.owner_start.rpartition("/")
    if not machine or machine != _machine():
        return False
    if info.owner_lock and _lock_held(info.owner_lock):
        return False
    return _start_ticks(info.owner_pid) != ticks


def lease_expired(info: CheckpointInfo, now: datetime | None = None) -> bool:
    """True when ``info`` is PENDING and its lease has run out (by this host's clock)."""
    if info.status is not Status.PENDING or info.lease_expires_at is None:
        return info.status is Status.PENDING
    return info.lease_expires_at <= (now or datetime.now(UTC))


def abandoned(info: CheckpointInfo, host: str, now: datetime | None = None) -> bool:
    """True when the PENDING row ``info`` may be settled now (see the module docstring)."""
    return lease_expired(info, now) or creator_dead(info, host)


def state(info: CheckpointInfo, host: str, now: datetime | None = None) -> str:
    """``committed``, ``pending`` (its creator is alive, or may be) or ``abandoned`` (its
    creator is dead or its lease expired: the next create of the name or gc settles it)."""
    if info.status is Status.COMMITTED:
        return "committed"
    return "abandoned" if abandoned(info, host, now) else "pending"


class Heartbeat:
    """Renews a reservation's lease every ``lease_s / 4`` seconds in a daemon thread,
    from :meth:`start` until :meth:`stop`, so that a create that takes longer than the
    lease keeps its name, and one that dies loses it within a lease.

    A failed renewal is logged and retried at the next beat; a row that is gone or
    committed ends the heartbeat (the create's own commit then says what happened).
    """

    def __init__(self, catalog: Catalog, checkpoint_id: int, lease_s: float) -> None:
        self._catalog = catalog
        self._id = checkpoint_id
        self._lease_s = lease_s
        self._stop = threading.Event()
        self._thread = threading.Thread(
            target=self._run, name=f"cryostash-lease-{checkpoint_id}", daemon=True
        )
        self.lost = False  #: the row went (undone by someone else) while we held it

    def renew(self, lock: Path | None = None) -> None:
        """Renew now (from the creating thread), recording the scratch ``lock`` if given."""
        self._catalog.renew_lease(
            self._id, self._lease_s, lock=str(lock) if lock is not None else None
        )

    def _run(self) -> None:
        interval = self._lease_s / BEATS_PER_LEASE
        while not self._stop.wait(interval):
            try:
                self._catalog.renew_lease(self._id, self._lease_s)
            except (CheckpointNotFound, CatalogError) as exc:
                if isinstance(exc, CheckpointNotFound) or "not pending" in str(exc):
                    self.lost = isinstance(exc, CheckpointNotFound)
                    return
                log.warning("could not renew the lease of checkpoint #%s: %s", self._id, exc)
            except CryostashError as exc:
                log.warning("could not renew the lease of checkpoint #%s: %s", self._id, exc)

    def start(self) -> None:
        """Start beating."""
        self._thread.start()

    def stop(self) -> None:
        """Stop beating and wait for the thread (at most one renewal in flight)."""
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join()


@contextlib.contextmanager
def heartbeat(catalog: Catalog, checkpoint_id: int, lease_s: float) -> Iterator[Heartbeat]:
    """A running :class:`Heartbeat` for the block."""
    beat = Heartbeat(catalog, checkpoint_id, lease_s)
    beat.start()
    try:
        yield beat
    finally:
        beat.stop()


#: How often :func:`reserve` undoes an abandoned holder and tries again.
RESERVE_ATTEMPTS = 3


def reserve(
    catalog: Catalog,
    store: Store,
    *,
    host: str,
    lease_s: float,
    target: str,
    name: str,
    engine: str,
    labels: Mapping[str, str],
) -> CheckpointInfo:
    """Reserve ``target``/``name`` in ``store`` for this process (a PENDING row recording
    it as the creator). A PENDING row holding the name whose creator is dead or whose
    lease expired (:func:`abandoned`) is undone first (event ``gc-abort``, ``"by":
    "create"``), so a crashed create never blocks its name.

    Raises:
        CheckpointExists: committed (``checkpoint with name NAME already exists for
            container TARGET``) or held by a live creator (the same words, then ``(being
            created by host H, PID P, since T)``).
    """
    me = this_process()
    for attempt in range(RESERVE_ATTEMPTS):
        try:
            return catalog.reserve(
                store_url=store.url, target=target, name=name, host=host, engine=engine,
                labels=labels, lease_seconds=lease_s, owner_pid=me.pid, owner_start=me.start,
            )
        except CheckpointExists as exc:
            holder = exc.holder
            last = attempt == RESERVE_ATTEMPTS - 1
            if last or not isinstance(holder, CheckpointInfo) or not abandoned(holder, host):
                raise
            if cleanup.undo_abandoned(catalog, store, holder):
                catalog.record_event(
                    host=host, action="gc-abort", target=target, name=name,
                    store_url=store.url,
                    detail={"by": "create", "created_by": holder.host,
                            "created_at": holder.created_at.isoformat(),
                            "owner_pid": holder.owner_pid},
                )
    raise AssertionError("unreachable")  # pragma: no cover
