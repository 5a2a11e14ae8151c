"""The detached helper process of a lazy restore (``restore --lazy``, ``migrate --lazy``).

:func:`prepare_lazy` checks, before anything runs, that the engine can restore lazily
(only ``criu``, with userfaultfd: :func:`~cryostash.engines.criu_lazy.lazy_support`),
then starts a **detached helper** (a double fork: a new session, reparented to init) that
gets ready (catalog connected, store client made, CRIU located) before the checkpoint need
exist; :meth:`LazyLaunch.go` tells it to restore and waits only until the helper reports
that the process runs (or why it could not); :meth:`LazyLaunch.cancel` makes it exit
without restoring anything. SIGTERM, SIGINT and SIGHUP (:data:`STOP_SIGNALS`) make the
helper leave before it was told to go, and fail the restore cleanly after
(:meth:`Session.stop`: the tree killed before it can read a missing page, the event
recorded, mount and scratch folder removed). What the helper does, on a repository of
its own (catalog connection and store clients of its own), and how it fails:
:mod:`cryostash.repository.lazy_session`. The verb: :mod:`cryostash.operations.restore_lazy`.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import threading
import time
import traceback
from collections.abc import Callable, Sequence
from typing import Any

from cryostash.engines import criu_lazy
from cryostash.engines.criu import CriuEngine
from cryostash.errors import CryostashError, EngineError, UsageError, error_class
from cryostash.repository.lazy_session import Session
from cryostash.repository.repository import Repository
from cryostash.types import RestoreResult

#: Signals after which the helper fails the restore cleanly (:meth:`Session.stop`).
STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT, signal.SIGHUP)


def prepare_lazy(
    repository: Repository,
    target: str,
    name: str,
    *,
    engine: str,
    checkpoint_dir: str | None = None,
    engine_args: Sequence[str] = (),
) -> LazyLaunch:
    """Start the helper of a lazy restore of ``target``/``name`` now, and have it wait.

    The helper gets ready (its catalog connection, the store and its client, CRIU
    located) and waits for :meth:`LazyLaunch.go`; the checkpoint itself need not exist
    yet (``migrate --lazy`` prepares before its final dump, so that the helper's start is
    not downtime). :meth:`LazyLaunch.cancel` makes it exit without restoring anything.

    Raises:
        UsageError: an engine other than criu (``lazy restore is not supported by ENGINE``).
        EngineError: no userfaultfd or CRIU; nothing is started.
    """
    criu = criu_lazy.require_lazy_support(repository.engine(engine), ask_criu=False)
    # No catalog connection may cross the fork (SQLite's locks and WAL index are per
    # process; a PostgreSQL socket would be shared): the helper opens its own.
    repository.close()
    read_end, write_end = os.pipe()
    go_read, go_write = os.pipe()
    first = os.fork()
    if first == 0:  # pragma: no cover - the child leaves by os._exit
        code = 70
        try:
            os.close(read_end)
            os.close(go_write)
            os.setsid()
            if os.fork() == 0:
                code = _helper(
                    repository, target, name, criu, checkpoint_dir, tuple(engine_args),
                    write_end, go_read,
                )
            else:
                code = 0
        finally:
            os._exit(code)
    os.close(write_end)
    os.close(go_read)
    os.waitpid(first, 0)
    return LazyLaunch(read_end, go_write)


class LazyLaunch:
    """A prepared lazy restore (:func:`prepare_lazy`): :meth:`go` once, or :meth:`cancel`.

    ``helper_pid`` is the helper's PID (None if it died before saying it).
    """

    def __init__(self, report_fd: int, go_fd: int) -> None:
        self._report: int | None = report_fd
        self._go: int | None = go_fd
        line = b""
        while not line.endswith(b"\n"):
            byte = os.read(report_fd, 1)
            if not byte:
                break
            line += byte
        self.helper_pid = int(line) if line.strip().isdigit() else None

    def go(self, started: float | None = None) -> RestoreResult:
        """Restore now; return once the process runs (as
        :func:`cryostash.operations.restore_lazy.restore_lazy`).
        ``started``: the monotonic time the restore counts from (default: now).

        Raises:
            as :func:`cryostash.operations.restore_lazy.restore_lazy`; UsageError: already
            used or cancelled.
        """
        if self._go is None or self._report is None:
            raise UsageError("this lazy restore was already started or cancelled")
        when = time.monotonic() if started is None else started
        try:
            os.write(self._go, f"{when!r}\n".encode())
        except BrokenPipeError:
            pass  # the helper failed while getting ready: its report says why
        finally:
            os.close(self._go)
            self._go = None
        with os.fdopen(self._report, "rb") as pipe:
            self._report = None
            raw = pipe.read()
        try:
            report: dict[str, Any] = json.loads(raw)
        except ValueError:
            # Not an EngineError: the helper may have died after CRIU's restore, so nothing
            # says the process is not running (``migrate`` must not roll back on this).
            raise CryostashError(
                "the lazy-restore helper ended without reporting: the restored process may "
                "be running or not; check the checkpoint's PID before restoring it again"
            ) from None
        if not report.get("ok"):
            raise error_class(int(report.get("exit_code", 1)))(str(report.get("message")))
        details = dict(report["details"])
        return RestoreResult(
            pid=int(report["pid"]), duration_s=report["duration_s"], details=details
        )

    def cancel(self) -> None:
        """Tell the helper to exit without restoring (nothing once :meth:`go` ran)."""
        for fd in (self._go, self._report):
            if fd is not None:
                os.close(fd)
        self._go = self._report = None


def _watch_signals(act: Callable[[str], None]) -> None:
    """Call ``act(SIGNAME)`` from a watcher thread for each of :data:`STOP_SIGNALS`.

    Not from a Python signal handler: those run only in the main thread, between
    bytecodes, and the kernel may deliver the signal to any thread (FUSE, fetches) while
    the main thread sits in a wait that is simply resumed. The C-level handler writes the
    signal number to a wake-up pipe whichever thread it interrupts; the watcher reads it.
    """
    read_end, write_end = os.pipe()
    os.set_blocking(write_end, False)
    signal.set_wakeup_fd(write_end, warn_on_full_buffer=False)
    for signum in STOP_SIGNALS:
        signal.signal(signum, lambda _signum, _frame: None)

    def watch() -> None:
        while True:
            for number in os.read(read_end, 64):
                if number in STOP_SIGNALS:
                    act(signal.Signals(number).name)

    threading.Thread(target=watch, name="lazy-signals", daemon=True).start()


def _helper(
    parent: Repository,
    target: str,
    name: str,
    criu: CriuEngine,
    checkpoint_dir: str | None,
    extra: tuple[str, ...],
    report_fd: int,
    go_fd: int,
) -> int:
    """The detached helper's life (see the module docstring); its exit status."""
    os.write(report_fd, f"{os.getpid()}\n".encode())
    devnull = os.open(os.devnull, os.O_RDWR)
    os.dup2(devnull, 1)  # the caller's stdout must see EOF when the caller exits
    repo = Repository(parent.settings, jobs=parent.jobs)
    repo.ask_passphrase = parent.ask_passphrase
    session = Session(repo, target, name, criu, checkpoint_dir, extra)
    reported = False
    going = False
    deciding = threading.Lock()

    def on_signal(name: str) -> None:
        with deciding:
            if not going:  # nothing restored yet: just leave (the caller gets the reason)
                message = f"lazy restore failed: the lazy-restore helper was stopped by {name}"
                report({"ok": False, "exit_code": EngineError.exit_code, "message": message})
                os._exit(1)
        session.stop(f"the lazy-restore helper was stopped by {name} before every page arrived")

    _watch_signals(on_signal)

    def report(data: dict[str, Any]) -> None:
        nonlocal reported
        with contextlib.suppress(BrokenPipeError):  # the caller may be gone
            os.write(report_fd, json.dumps(data).encode())
        os.close(report_fd)
        for fd in (0, 2):
            os.dup2(devnull, fd)
        reported = True

    try:
        session.prepare()
        with os.fdopen(go_fd, "rb") as told:
            line = told.readline()
        if not line.strip():  # cancelled (or the caller died): nothing was restored
            os.close(report_fd)
            return 0
        with deciding:
            session.started = float(line)
            going = True
        session.run(report)
        return 0
    except BaseException as exc:
        if not reported:
            code = exc.exit_code if isinstance(exc, CryostashError) else 1
            message = str(exc) if isinstance(exc, CryostashError) else traceback.format_exc()
            report({"ok": False, "exit_code": code, "message": message})
        else:
            session.record_failure(f"lazy-restore helper failed: {exc!r}")
        return 1
    finally:
        repo.close()
