"""Pre-copy live migration (``cryostash migrate``): move a running process to a destination
with a short downtime, without kernel dirty-page tracking.

The source is this process's :class:`~cryostash.repository.Repository`, on which the
checkpoints are made, removed and, on rollback, restored (the ``create``, ``rm`` and
``restore`` operations); the destination a
:class:`~cryostash.operations.destination.Destination` (this host, or a host reached by
a command: ``MigrateRequest.to``) that sees the same store and catalog. Its receiving
end: :mod:`cryostash.operations.migrate_receive`.

1. Every name is checked before anything is dumped: NAME and the pre-copy names
   NAME-pre1 .. NAME-preN must be valid and must not exist. With ``lazy``, the
   destination refuses a lazy restore it can tell will not work
   (:meth:`Destination.check_lazy`: this host probes the engine, CRIU, userfaultfd and
   FUSE; a command destination only the engine here, the rest in step 3).
2. Pre-copy, for k in 1..N: create NAME-preK with ``leave_running`` (the process keeps
   running), then, unless ``prefetch`` is off, the destination prefetches it (its chunk
   cache gets its chunks).
3. The destination gets ready to restore (:meth:`Destination.prepare_restore`: a command
   destination is started, loads its modules, connects to the catalog and the store), so
   that its start-up is not part of the downtime. With ``lazy`` a command destination
   checks there, before it says it is ready, that it can restore lazily.
4. Final: create NAME without ``leave_running`` (CRIU stops the process). Deduplication
   makes its upload carry only the chunks the pre-copies lack (the catalog knows
   theirs), and the destination's cache makes its download carry only those. Chunks
   unchanged since the last pre-copy, whose image is kept in scratch until the
   migration ends (:mod:`~cryostash.transfer.baseline`), are compared, not re-hashed.
   Then the destination restores NAME; with ``lazy``, lazily: the restore returns once
   the process runs, and its memory pages follow from the store, through a detached
   helper at the destination (:mod:`cryostash.repository.lazy_helper`), after the migration has
   returned.
5. The pre-copy checkpoints are removed unless ``keep_precopy`` (chunks the final one
   uses survive: ``rm`` frees only chunks no other checkpoint uses). A removal that fails
   becomes a warning of the report: the process has moved by then.

Downtime: from the start of the final dump to the destination's restore returning,
measured on this host's monotonic clock, and the exact sum of its parts: ``dump_s``,
``upload_s``, ``commit_s`` (from the end of the upload until the checkpoint is committed
and create returns), ``handoff_s`` (the destination's work around download and restore:
catalog and manifest reads, event, clean-up; and the messages to and from it),
``download_s``, ``pid_wait_s`` (the destination engine's time before CRIU ran: waiting for
the dumped PID to be free, which happens when source and destination are one machine and
the stopped process has not been reaped yet, plus finding CRIU, a few ms) and
``restore_s`` (CRIU's restore).

Lazy (``lazy``): the same parts, of a restore that ends when the process runs:
``download_s`` is the download of the eager files only (everything but ``pages-*.img``),
``pid_wait_s`` the time from the end of the helper's preparation (eager files, FUSE view,
``criu lazy-pages`` started) until CRIU's restore started, ``restore_s`` CRIU's lazy
restore until the process runs; the helper's start and preparation other than the
download are in ``handoff_s``. The memory pages (the bulk of the image) are not in the
downtime: they arrive while the process runs (faulted in on demand, the rest streamed);
the helper records a ``restore`` event (``lazy: true``, ``time_to_complete_s``, ...) when
every page is in.

Failures:

- before the final dump (a pre-copy create or prefetch fails, the destination does not
  get ready): the pre-copies made so far are removed (unless kept) and the error says the
  process still runs at the source;
- the final create fails: ``create`` has undone it; the error says whether the process
  still runs (CRIU resumes it when the dump itself fails);
- the destination's restore fails: the final checkpoint is committed. With ``rollback``
  (the default) it is restored here, at the source, when the failure shows the process
  is not running there (an engine, storage, integrity, not-found or usage error: raised
  before or by the engine's restore, which leaves nothing running). Any other failure
  (the catalog failed, perhaps after the restore; the command died or printed nothing) is
  not rolled back: two copies of the process must never run. Either way the error (the
  class of the destination's error) says where the process is and how to restore it by
  hand.
- lazy: a lazy restore that fails before the process runs is the restore failing above
  (rolled back the same way; the rollback restores eagerly). One that fails after it ran
  (a chunk of the pages fails verification, the store stays unreachable, CRIU's daemon
  fails) happens after the migration returned: the helper kills the restored process
  (before it can read a missing page) and records a ``restore-failed`` event; the final
  checkpoint is kept, to be restored by hand (``cryostash restore TARGET NAME``).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

from cryostash.errors import (
    CheckpointExists,
    CheckpointNotFound,
    CryostashError,
    EngineError,
    IntegrityError,
    StorageError,
    UsageError,
    several_lines,
)
from cryostash.names import validate_name, validate_target
from cryostash.operations.create import CreateRequest, check_locator, create
from cryostash.operations.destination import CommandDestination, Destination, dir_option
from cryostash.operations.destination_local import LocalDestination
from cryostash.operations.migrate_report import (
    FinalStep,
    MigrationReport,
    PrecopyStep,
    final_step,
    precopy_step,
)
from cryostash.operations.restore import RestoreRequest, restore
from cryostash.operations.rm import RmRequest, rm
from cryostash.repository import Repository
from cryostash.transfer.baseline import Baseline
from cryostash.types import CheckpointInfo


def default_name(now: datetime | None = None) -> str:
    """``migrate-<UTC yyyymmddThhmmss>``: the final checkpoint's name when none is given."""
    return f"migrate-{(now or datetime.now(UTC)).astimezone(UTC):%Y%m%dT%H%M%S}"


@dataclass(frozen=True)
class MigrateRequest:
    """What to migrate, and how.

    Attributes:
        target: the checkpoints' target (a container name for container engines).
        name: the final checkpoint's name; pre-copy ``k`` is ``NAME-preK``.
        locator: what the engine dumps (a PID for criu).
        engine: the engine.
        precopy: pre-copy checkpoints before the final one (0: plain stop-and-copy).
        prefetch: have the destination prefetch each pre-copy.
        keep_precopy: keep the pre-copy checkpoints afterwards.
        rollback: restore at the source when the destination's restore fails.
        checkpoint_dir: the store, when not the default one (both hosts use it).
        labels: labels of every checkpoint made.
        dump_args: engine arguments of each dump (``--criu-opt``, common flags).
        restore_args: ``restore`` flags, at the destination and on rollback.
        allow: ``restore --allow`` words, at the destination and on rollback.
        lazy: the destination restores lazily (criu engine; see the module docstring).
        to: the command that runs cryostash at the destination, split like a shell (e.g.
            ``ssh host-b cryostash``); None: this host.
    """

    target: str
    name: str
    locator: str
    engine: str = "criu"
    precopy: int = 1
    prefetch: bool = True
    keep_precopy: bool = False
    rollback: bool = True
    checkpoint_dir: str | None = None
    labels: dict[str, str] = field(default_factory=dict)
    dump_args: tuple[str, ...] = ()
    restore_args: tuple[str, ...] = ()
    allow: tuple[str, ...] = ()
    lazy: bool = False
    to: str | None = None

    def precopy_names(self) -> list[str]:
        """``NAME-pre1`` .. ``NAME-preN``."""
        return [f"{self.name}-pre{k}" for k in range(1, self.precopy + 1)]


def _check_names(source: Repository, request: MigrateRequest) -> list[str]:
    """Every name the migration will create (pre-copies, then the final one), none of
    which may exist in ``source``.

    Raises:
        UsageError: a negative ``precopy``.
        InvalidName: the target or a name is invalid.
        CheckpointExists: a name exists already.
    """
    if request.precopy < 0:
        raise UsageError(f"--precopy {request.precopy}: expected 0 or more")
    validate_target(request.target)
    names = [*request.precopy_names(), request.name]
    for name in names:
        validate_name(name)
    for name in names:
        try:
            source.checkpoint(request.target, name, request.checkpoint_dir)
        except CheckpointNotFound:
            continue
        raise CheckpointExists(
            f"checkpoint with name {name} already exists for container {request.target}"
        )
    return names


def migrate(
    source: Repository, request: MigrateRequest, *, destination: Destination | None = None
) -> MigrationReport:
    """Migrate ``request.locator`` from ``source`` to the destination (see the module
    docstring): ``request.to``'s, or, in process, ``destination`` (any
    :class:`~cryostash.operations.destination.Destination`).

    Raises:
        UsageError, InvalidName, CheckpointExists: before anything is dumped (``--to``'s
            program not found, no process with that PID too); with ``lazy``, also
            EngineError (no CRIU, userfaultfd or FUSE at this host). RestoreKeyRequired:
            the destination is this host and the store's key a writer key (it restores
            nothing).
        CryostashError (the class of the failure): a step failed; the message says where
        the process is.
    """
    if destination is None:
        destination = (
            CommandDestination.parse(request.to) if request.to else LocalDestination(source)
        )
    if isinstance(destination, LocalDestination):  # restores here: a writer key is refused
        source.store(request.checkpoint_dir).unlock(restore=True)
    _check_names(source, request)
    check_locator(source.engine(request.engine), request.locator)  # no such process: now
    if request.lazy:
        try:
            destination.check_lazy(request.engine)
        except CryostashError as exc:
            raise _same_kind(
                exc,
                f"migration of {request.target} refused: {exc}\n"
                f"{_source_state(request)}; nothing was dumped",
            ) from exc
    steps: list[PrecopyStep] = []
    made: list[str] = []
    doing = ""
    baseline = Baseline(source.settings.scratch_dir, f"{request.target}-{request.name}")

    def dump(name: str, leave_running: bool) -> CheckpointInfo:
        return create(
            source,
            CreateRequest(
                request.target, name, locator=request.locator, engine=request.engine,
                leave_running=leave_running, checkpoint_dir=request.checkpoint_dir,
                labels=dict(request.labels), engine_args=request.dump_args,
            ),
            baseline=baseline,
        )

    try:
        for name in request.precopy_names():
            doing = f"pre-copy checkpoint {name}"
            info = dump(name, leave_running=True)
            made.append(name)
            fetched = None
            if request.prefetch:
                doing = f"the prefetch of {name} at the destination ({destination.describe()})"
                fetched = destination.prefetch(request.target, name, request.checkpoint_dir)
            steps.append(precopy_step(name, info.stats, fetched))
        doing = f"getting the destination ({destination.describe()}) ready to restore"
        pending = destination.prepare_restore(
            request.target, request.name, request.checkpoint_dir, request.restore_args,
            lazy_engine=request.engine if request.lazy else None, allow=request.allow,
        )
    except BaseException as exc:
        baseline.close()
        warnings = _remove(source, request, made)
        if not isinstance(exc, Exception):
            raise
        raise _same_kind(
            exc,
            f"migration of {request.target} stopped at {doing}: {exc}\n"
            f"{_source_state(request)}; nothing was migrated"
            + "".join(f"\nwarning: {w}" for w in warnings),
        ) from exc
    try:
        t_create = time.monotonic()
        try:
            info = dump(request.name, leave_running=False)
        except BaseException as exc:
            pending.cancel()
            warnings = _remove(source, request, made)
            if not isinstance(exc, Exception):
                raise
            raise _same_kind(
                exc,
                f"migration of {request.target} failed at the final checkpoint "
                f"{request.name}: {exc}\n{_source_state(request)}"
                + "".join(f"\nwarning: {w}" for w in warnings),
            ) from exc
        t_created = time.monotonic()
        try:
            restored = pending.go()
            t_done = time.monotonic()
        except Exception as exc:
            warnings = _remove(source, request, made)
            message = _restore_failed(source, destination, request, exc, warnings)
            raise _same_kind(exc, message) from exc
    finally:
        pending.cancel()
        baseline.close()
    stats = info.stats
    warnings = [
        f"prefetch of {step.name}: {step.prefetch['warning']}"
        for step in steps
        if step.prefetch and step.prefetch.get("warning")
    ]
    warnings += _remove(source, request, made)
    if not isinstance(restored.get("pid"), int):
        raise CryostashError(
            f"the destination ({destination.describe()}) restored {request.target}/"
            f"{request.name} but reported no PID: {restored!r}"
        )
    final, downtime = final_step(request.name, stats, restored, t_create, t_created, t_done)
    return MigrationReport(
        target=request.target,
        name=request.name,
        destination=destination.describe(),
        precopy=tuple(steps),
        final=final,
        downtime_s=downtime,
        removed=tuple(n for n in made if not request.keep_precopy),
        warnings=tuple(warnings),
    )


def _restore_failed(
    source: Repository,
    destination: Destination,
    request: MigrateRequest,
    exc: Exception,
    warnings: list[str],
) -> str:
    """Roll back if asked; the message saying what failed and where the process is."""
    t, n = request.target, request.name
    head = (
        f"migration of {t} failed: the restore at the destination ({destination.describe()}) "
        f"failed: {exc}\nThe process was stopped at the source; checkpoint {t}/{n} holds it."
    )
    by_hand = (
        f"Restore it by hand with `cryostash restore {t} {n}`"
        + dir_option(request.checkpoint_dir)
        + " (at the destination or here)."
    )
    if not request.rollback:
        tail = f"Not rolled back (--no-rollback). {by_hand}"
    elif not isinstance(exc, _NOT_RESTORED):
        tail = (
            "Not rolled back: the process may be running at the destination (this failure "
            f"does not say it is not), and must not run twice. Check there; if it is not "
            f"running, {by_hand[0].lower()}{by_hand[1:]}"
        )
    else:
        try:
            back = restore(
                source,
                RestoreRequest(
                    t, n, request.checkpoint_dir, request.restore_args, allow=request.allow
                ),
            )
        except Exception as again:
            tail = f"Rolling back at the source failed too: {again}\n{by_hand}"
        else:
            tail = (
                f"Rolled back: the process runs again at the source as PID {back.pid} "
                f"(restored from {t}/{n}, which is kept)."
            )
    return "\n".join([head, tail, *(f"warning: {w}" for w in warnings)])


#: Failures of a destination's restore that leave nothing running there.
_NOT_RESTORED = (EngineError, StorageError, IntegrityError, CheckpointNotFound, UsageError)


def _remove(source: Repository, request: MigrateRequest, made: list[str]) -> list[str]:
    """Remove the pre-copy checkpoints ``made`` (unless kept); the failures, as warnings."""
    if request.keep_precopy:
        return []
    warnings = []
    for name in made:
        try:
            rm(source, RmRequest(request.target, name, request.checkpoint_dir))
        except Exception as exc:
            warnings.append(f"pre-copy checkpoint {request.target}/{name} not removed: {exc}")
    return warnings


def _source_state(request: MigrateRequest) -> str:
    """Whether the process still runs at the source (known for criu's PIDs only)."""
    if request.engine != "criu" or not request.locator.strip().isdigit():
        return f"Check {request.locator} at the source"
    pid = request.locator.strip()
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
        running = stat[stat.rindex(")") + 2 :].split()[0] not in ("Z", "X")
    except (OSError, ValueError, IndexError):
        running = False
    if running:
        return f"The process still runs at the source (PID {pid})"
    return f"The process (PID {pid}) is no longer running at the source"


def _same_kind(exc: BaseException, message: str) -> CryostashError:
    """A new error of ``exc``'s class (a :class:`CryostashError`) with ``message`` (of
    several lines: what failed, where the process is, warnings)."""
    if isinstance(exc, CryostashError):
        try:
            return several_lines(type(exc)(message))
        except TypeError:
            pass
    return several_lines(CryostashError(message))


__all__ = [
    "FinalStep",
    "MigrateRequest",
    "MigrationReport",
    "PrecopyStep",
    "default_name",
    "migrate",
]
