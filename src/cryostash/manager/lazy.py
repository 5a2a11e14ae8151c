"""Lazy restore (``cryostash restore --lazy``): the process runs before its memory arrives.

:func:`restore_lazy` checks, before anything runs, that the engine can restore lazily
(only ``criu``, with userfaultfd: :func:`~cryostash.engines.criu_lazy.lazy_support`),
then starts a **detached helper** (a double fork: a new session, reparented to init)
and waits only until the helper reports that the process runs (or why it could not).
:func:`prepare_lazy` and :class:`LazyLaunch` split that in two for ``migrate --lazy``:
the helper is started and gets ready (catalog connected, store client made, CRIU located)
before the checkpoint exists, and restores when told to go. The helper, on its own
repository (catalog connection and store clients of its own):

1. takes a private locked scratch folder; loads the manifest (its digest checked against
   the catalog) and fetches and verifies every file except the memory pages
   (``pages-*.img``) into ``SCRATCH/eager``;
2. mounts ``SCRATCH/mnt``: a read-only FUSE view of the whole image folder in which the
   eager files are read from disk and the page files from
   :class:`~cryostash.transfer.pageserve.PageSource` (chunks verified before a byte is
   returned; chunk cache first, then store);
3. starts ``criu lazy-pages`` and then ``criu restore --lazy-pages`` on that folder
   (:mod:`cryostash.engines.criu_lazy`), starts streaming the chunks in file order, and
   reports ``{"pid": ...}``; the command returns;
4. waits for the daemon to deliver every page, then unmounts, removes the scratch folder
   and records a ``restore`` event (``lazy: true``; time to running, time to complete,
   pages faulted and streamed, chunks and bytes from cache and store) and exits.

Failure: when a chunk fails verification, or the store stays unreachable past its
retries, the restored tree is killed (SIGKILL, waited for) **before** any read fails
(PageSource holds every failing read back until :class:`_Guard` has acted), so the process
never runs on missing or wrong memory; during CRIU's restore, ``criu restore`` is killed
with the tree it was restoring instead. The helper then records a ``restore-failed`` event
(``error`` names the chunk, the file and, for a store failure, the store and why) and
cleans up. If the daemon fails for another reason the tree is killed too. No helper
process, mount or scratch folder is left behind. Not covered: the helper itself killed by
SIGKILL (or the machine's OOM killer) while pages are missing: nothing is left to kill the
tree, the daemon loses its pages and the process may see zeros (docs/lazy-restore.md).
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import threading
import time
import traceback
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from cryostash.config import Settings
from cryostash.engines import criu_lazy
from cryostash.engines.criu import CriuEngine
from cryostash.errors import CryostashError, EngineError, UsageError, error_class
from cryostash.manager.repository import Repository
from cryostash.transfer import datapath
from cryostash.transfer.fusefs import FuseMount
from cryostash.transfer.pageserve import PageSource
from cryostash.transfer.scratch import private_scratch
from cryostash.types import FileEntry, RestoreResult

#: The files served lazily: CRIU's memory pages. Everything else is fetched first.
LAZY_FILE = re.compile(r"pages-\d+\.img")
#: How long a failure waits for a running ``criu restore`` (killed) to return.
SETTLE_TIMEOUT_S = 30.0


def split_files(files: Sequence[FileEntry]) -> tuple[list[FileEntry], list[FileEntry]]:
    """(eager, lazy) files of a CRIU image.

    Raises:
        UsageError: a file in a sub-folder (a CRIU image folder is flat).
    """
    if any("/" in entry.path for entry in files):
        raise UsageError("lazy restore needs a flat CRIU image folder (this one has sub-folders)")
    lazy = [entry for entry in files if LAZY_FILE.fullmatch(entry.path)]
    eager = [entry for entry in files if not LAZY_FILE.fullmatch(entry.path)]
    return eager, lazy


def restore_lazy(
    repository: Repository,
    target: str,
    name: str,
    *,
    engine: str,
    checkpoint_dir: str | None = None,
    engine_args: Sequence[str] = (),
) -> RestoreResult:
    """Restore ``target``/``name`` lazily (see the module docstring); return once it runs.

    ``engine`` is the engine to use (the recorded one unless overridden).
    ``RestoreResult.details`` holds ``lazy``, ``helper_pid``, ``time_to_running_s``,
    ``restore_s`` (CRIU's restore) and the download stats of the eager files.

    Raises:
        UsageError: an engine other than criu (``lazy restore is not supported by ENGINE``).
        EngineError: no userfaultfd or CRIU, or the restore failed.
        IntegrityError, StorageError, CheckpointNotFound: as a restore.
        CryostashError: the helper ended without a report (the process may run).
    """
    started = time.monotonic()
    return prepare_lazy(
        repository, target, name, engine=engine, checkpoint_dir=checkpoint_dir,
        engine_args=engine_args,
    ).go(started)


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
        UsageError, EngineError: as :func:`restore_lazy`, before anything is started.
    """
    from cryostash.engines import get_engine

    criu = criu_lazy.require_lazy_support(
        get_engine(engine, criu_path=repository.settings.criu_path), ask_criu=False
    )
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
        """Restore now; return once the process runs (as :func:`restore_lazy`).
        ``started``: the monotonic time the restore counts from (default: now).

        Raises:
            as :func:`restore_lazy`; UsageError: already used or cancelled.
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


class _Guard:
    """Kills the restored tree on the first failure, whenever its PID becomes known.

    :meth:`fail` returns only once the failure can no longer reach a running process:
    the tree is killed (its PID known, waited for), or ``criu restore`` and the tree it
    was restoring got SIGKILL and ``criu restore`` has returned (or
    :data:`SETTLE_TIMEOUT_S` passed), or it failed by itself (:meth:`settle`). PageSource
    holds back every failing read until then, so CRIU's daemon cannot fail (and let the
    kernel hand the missing pages zeros) while the process could still run.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._settled = threading.Event()
        self.pid: int | None = None
        self.restorer: int | None = None
        self.failure: str | None = None
        self.killed = False

    def fail(self, reason: str) -> None:
        with self._lock:
            if self.failure is None:
                self.failure = reason
            self._kill()
        # Bounded, in case CRIU never returns: whatever it restored was SIGKILLed above.
        self._settled.wait(SETTLE_TIMEOUT_S)

    def restoring(self, criu_pid: int) -> None:
        """``criu restore`` runs as ``criu_pid``."""
        with self._lock:
            self.restorer = criu_pid
            self._kill()

    def running(self, pid: int) -> None:
        """The restore returned: the tree runs as ``pid`` (killed if a failure came)."""
        with self._lock:
            self.pid = pid
            self._kill()
        self.settle()

    def settle(self) -> None:
        """No tree can start any more (the restore returned, or never ran)."""
        self._settled.set()

    def _kill(self) -> None:
        if self.failure is None or self.killed:
            return
        if self.pid is not None:
            criu_lazy.kill_tree(self.pid)
            self.killed = True
        elif self.restorer is not None and not self._settled.is_set():
            # The restore fails and the tree dies with it. Not waited for: its tasks may be
            # waiting for reads of the view that are answered once this failure is handled.
            criu_lazy.kill_tree(self.restorer, timeout=0)


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
    session = _Session(repo, target, name, criu, checkpoint_dir, extra)
    reported = False

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
        session.started = float(line)
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


class _Session:
    """One lazy restore, run by the helper."""

    def __init__(
        self, repo: Repository, target: str, name: str, criu: CriuEngine,
        checkpoint_dir: str | None, extra: tuple[str, ...],
    ) -> None:
        self.repo, self.target, self.name = repo, target, name
        self.criu, self.checkpoint_dir, self.extra = criu, checkpoint_dir, extra
        self.started = time.monotonic()
        self.guard = _Guard()
        self.store_url: str | None = None
        self.detail: dict[str, Any] = {"lazy": True}

    def prepare(self) -> None:
        """What needs no checkpoint yet (CRIU was located before the fork): the catalog
        connected, the store opened and its client used once (session and connection)."""
        self.repo.reader  # noqa: B018 - opens the catalog connection
        store = self.repo.store(self.checkpoint_dir)
        store.exists()
        self.store_url = store.url

    def run(self, report: Any) -> None:
        from cryostash.manager.manager import CheckpointManager

        settings: Settings = self.repo.settings
        criu = self.criu
        mgr = CheckpointManager.for_repository(self.repo)
        info = mgr.get(self.target, self.name, self.checkpoint_dir)
        store = self.repo.store(self.checkpoint_dir)
        self.store_url = store.url
        manifest = mgr.manifest(store, info)
        eager, lazy = split_files(manifest.files)
        with private_scratch(settings.scratch_dir, f"lazy-{self.target}-{self.name}") as tmp:
            folders = {part: tmp / part for part in ("eager", "mnt", "work")}
            for folder in folders.values():
                folder.mkdir(mode=0o700)
            down = datapath.unpack_image(
                settings, store, eager, folders["eager"], jobs=self.repo.jobs
            )
            pages = PageSource(
                datapath.cached(settings, store), lazy, jobs=max(self.repo.jobs, 4),
                on_failure=self.guard.fail,
            )
            self._serve(criu, manifest.root_pid, eager, pages, folders, report, down.as_dict())

    def _serve(
        self, criu: CriuEngine, root_pid: int | None, eager: list[FileEntry], pages: PageSource,
        folders: dict[str, Path], report: Any, down: dict[str, Any],
    ) -> None:
        eager_dir = folders["eager"]

        def reader(name: str, offset: int, size: int) -> bytes:
            if name in lazy_names:
                return pages.read(name, offset, size)
            with open(eager_dir / name, "rb") as fh:
                fh.seek(offset)
                return fh.read(size)

        lazy_names = set(pages.names)
        sizes = {entry.path: entry.size for entry in eager}
        sizes.update({entry: pages.file_size(entry) for entry in lazy_names})
        fs = FuseMount(folders["mnt"], sizes, reader, direct=sorted(lazy_names), threads=4)
        fs.mount()
        daemon = None
        try:
            try:
                daemon = criu_lazy.start_daemon(criu, folders["mnt"], folders["work"])
                prepared = time.monotonic()
                pid, restore_s = criu_lazy.restore(
                    criu, folders["mnt"], folders["work"], root_pid, self.extra,
                    started=self.guard.restoring,
                )
            except BaseException:
                self.guard.settle()
                if self.guard.failure is None:
                    raise
                self.record_failure(self.guard.failure)
                raise EngineError(f"lazy restore failed: {self.guard.failure}") from None
            running = time.monotonic()
            self.guard.running(pid)
            if self.guard.failure is not None:
                self.detail["pid"] = pid
                self.record_failure(self.guard.failure)
                raise EngineError(f"lazy restore failed, process killed: {self.guard.failure}")
            pages.start_streaming()
            self.detail.update(
                pid=pid, time_to_running_s=round(running - self.started, 6),
                prepare_s=round(prepared - self.started, 6), restore_s=round(restore_s, 6),
                eager_bytes=down["bytes_restored"], eager_download_s=round(down["duration_s"], 6),
            )
            report({
                "ok": True, "pid": pid, "duration_s": restore_s,
                "details": {**self.detail, "helper_pid": os.getpid()},
            })
            code = daemon.wait()
            complete = time.monotonic()
            daemon = None
            self._finish(code, complete, pages, folders["work"])
        finally:
            if daemon is not None:
                if self.guard.pid is not None:
                    self.guard.fail("lazy restore stopped before every page arrived")
                criu_lazy.stop_daemon(daemon)
            pages.stop()
            fs.unmount()

    def _finish(self, code: int, complete: float, pages: PageSource, work: Path) -> None:
        faulted, copied, total = criu_lazy.daemon_pages(work)
        stats = pages.stats()
        self.detail.update(
            time_to_complete_s=round(complete - self.started, 6),
            pages_total=total, pages_faulted=faulted, pages_streamed=max(0, copied - faulted),
            **stats,
        )
        if self.guard.failure is not None:
            self.record_failure(self.guard.failure)
        elif code != 0:
            reason = criu_lazy.daemon_failure(code, work)
            self.guard.fail(reason)
            self.record_failure(reason)
        elif copied < total:
            self.record_failure(
                f"the process ended before all its pages arrived ({copied} of {total})",
                action="restore-incomplete",
            )
        else:
            self._event("restore", self.detail)

    def record_failure(self, reason: str, action: str = "restore-failed") -> None:
        """Record why this lazy restore failed (and whether the tree was killed)."""
        self._event(action, {**self.detail, "error": reason, "killed": self.guard.killed})

    def _event(self, action: str, detail: dict[str, Any]) -> None:
        self.repo.catalog.record_event(
            host=self.repo.settings.host, action=action, target=self.target, name=self.name,
            store_url=self.store_url, detail=detail,
        )
