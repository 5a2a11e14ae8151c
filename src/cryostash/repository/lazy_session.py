"""One lazy restore, as its detached helper (:mod:`cryostash.repository.lazy_helper`) runs it.

1. :meth:`Session.prepare`, before the checkpoint need exist: the catalog connected, the
   store opened and its client used once. Then, told to go, :meth:`Session.run`:
2. takes a private locked scratch folder; loads the manifest (its digest checked against
   the catalog) and fetches and verifies every file except the memory pages
   (``pages-*.img``) into ``SCRATCH/eager``;
3. mounts ``SCRATCH/mnt``: a read-only FUSE view of the whole image folder in which the
   eager files are read from disk and the page files from
   :class:`~cryostash.transfer.pageserve.PageSource` (chunks verified before a byte is
   returned; chunk cache first, then store);
4. starts ``criu lazy-pages`` and then ``criu restore --lazy-pages`` on that folder
   (:mod:`cryostash.engines.criu_lazy`), starts streaming the chunks in file order, and
   reports ``{"pid": ...}``; the command returns;
5. waits for the daemon to deliver every page, then unmounts, removes the scratch folder
   and records a ``restore`` event (``lazy: true``; time to running, time to complete,
   pages faulted and streamed, chunks and bytes from cache and store) and exits.

Failure: when a chunk fails verification, or the store stays unreachable past its
retries, the restored tree is killed (SIGKILL, waited for) **before** any read fails
(PageSource holds every failing read back until :class:`Guard` has acted), so the process
never runs on missing or wrong memory; during CRIU's restore, ``criu restore`` is killed
with the tree it was restoring instead. The helper then records a ``restore-failed`` event
(``error`` names the chunk, the file and, for a store failure, the store and why) and
cleans up. If the daemon fails for another reason the tree is killed too. No helper
process, mount or scratch folder is left behind.

Signals: SIGTERM, SIGINT or SIGHUP to the helper once it was told to go are a failure like
the others (:meth:`Session.stop`, from the helper's signal handler): the tree is killed
while the daemon still holds its pages (or ``criu restore`` is killed with it), then the
daemon is stopped, ``restore-failed`` names the signal, the view is unmounted and the
scratch folder removed. A signal once every page is in changes nothing (the process is
left running; the ``restore`` event is recorded). Not covered: the helper killed by
SIGKILL (or the machine's OOM killer) while pages are missing: nothing is left to kill the
tree, the daemon loses its pages and the process may see zeros; ``gc`` removes the mount
and the scratch folder it leaves (docs/lazy-restore.md).
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from cryostash.engines import criu_lazy
from cryostash.engines.criu import CriuEngine
from cryostash.errors import EngineError, UsageError
from cryostash.repository.repository import Repository
from cryostash.transfer import datapath
from cryostash.transfer.fusefs import FuseMount
from cryostash.transfer.pageserve import PageSource
from cryostash.types import FileEntry

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


class Guard:
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


class Session:
    """One lazy restore, run by the helper (see the module docstring)."""

    def __init__(
        self, repo: Repository, target: str, name: str, criu: CriuEngine,
        checkpoint_dir: str | None, extra: tuple[str, ...],
    ) -> None:
        self.repo, self.target, self.name = repo, target, name
        self.criu, self.checkpoint_dir, self.extra = criu, checkpoint_dir, extra
        self.started = time.monotonic()
        self.guard = Guard()
        self.store_url: str | None = None
        self.detail: dict[str, Any] = {"lazy": True}
        self.daemon: subprocess.Popen[bytes] | None = None
        self.view: FuseMount | None = None
        self.finished = False
        self.stopping = False

    def stop(self, reason: str) -> None:
        """Fail this restore from outside (the helper's signal handler; returns at once):
        a thread kills the tree (or the running ``criu restore``) unless every page is in
        already, then the daemon; the main thread then records ``restore-failed`` with
        ``reason`` and cleans up, as for any failure. Once only."""
        if self.stopping or self.finished:
            return
        self.stopping = True
        threading.Thread(target=self._stop, args=(reason,), name="lazy-stop", daemon=True).start()

    def _stop(self, reason: str) -> None:
        daemon = self.daemon
        if self.finished or (daemon is not None and _exited(daemon)):
            return  # every page is in (or the daemon failed): the main thread decides
        self.guard.fail(reason)
        if daemon is not None and self.guard.killed and not _exited(daemon):
            # The tree is dead: the daemon's pages can go. Its reads waiting for the store
            # are answered (else it cannot even die), and its exit ends the main wait.
            if self.view is not None:
                self.view.fail_reads()
            daemon.send_signal(signal.SIGKILL)

    def prepare(self) -> None:
        """What needs no checkpoint yet (CRIU was located before the fork): the catalog
        connected, the store opened and its client used once (session and connection)."""
        self.repo.reader  # noqa: B018 - opens the catalog connection
        store = self.repo.store(self.checkpoint_dir)
        store.exists()
        self.store_url = store.url

    def run(self, report: Any) -> None:
        """Restore (steps 2-5 of the module docstring); ``report`` gets the result once
        the process runs."""
        settings = self.repo.settings
        criu = self.criu
        info = self.repo.checkpoint(self.target, self.name, self.checkpoint_dir)
        store = self.repo.store(self.checkpoint_dir)
        self.store_url = store.url
        manifest = self.repo.manifest(store, info)
        eager, lazy = split_files(manifest.files)
        with self.repo.scratch(f"lazy-{self.target}-{self.name}") as tmp:
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
        if self.guard.failure is not None:  # stopped (a signal) before CRIU ran
            self.guard.settle()
            self.record_failure(self.guard.failure)
            raise EngineError(f"lazy restore failed: {self.guard.failure}")
        fs = self.view = FuseMount(
            folders["mnt"], sizes, reader, direct=sorted(lazy_names), threads=4
        )
        fs.mount()
        daemon = None
        try:
            try:
                daemon = self.daemon = criu_lazy.start_daemon(
                    criu, folders["mnt"], folders["work"]
                )
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
            self.finished = True
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


def _exited(proc: subprocess.Popen[bytes]) -> bool:
    """Whether ``proc`` (a child) has exited, reaped or not, without reaping it (safe while
    another thread waits for it)."""
    if proc.returncode is not None:
        return True
    try:
        return os.waitid(os.P_PID, proc.pid, os.WEXITED | os.WNOHANG | os.WNOWAIT) is not None
    except ChildProcessError:
        return True
