"""CRIU's lazy restore: ``criu lazy-pages`` beside ``criu restore --lazy-pages``.

How it works (CRIU 4.2, criu/uffd.c): ``criu restore --lazy-pages`` restores the tree but
leaves the anonymous private memory that the dump marked lazy unpopulated, registered
with a userfaultfd; it hands that descriptor to the ``criu lazy-pages`` daemon over the
socket ``WORK/lazy-pages.socket`` and resumes the tree. The daemon answers each page fault
by reading the page from ``IMAGES/pages-*.img`` (``UFFDIO_COPY``); once the restore has
finished it copies the remaining pages in the background and exits 0 when every page is
in. Both read the same image folder (``-D``); here that folder is the file system
cryostash serves (:mod:`cryostash.transfer.fusefs`), logs and sockets go to ``-W``.

Contract:

- :func:`lazy_support` says, running only ``criu --version`` and ``criu check --feature
  uffd-noncoop`` (about 0.05 s; or, on the restore's own path, asking the kernel for the
  same userfaultfd features: :mod:`cryostash.engines.userfaultfd`), why lazy restore
  cannot run (an engine other than ``criu``; no CRIU >= 4.2; no userfaultfd), or None.
- :func:`start_daemon` starts the daemon and returns once its socket exists (or raises
  with the tail of its log); :func:`restore` runs the restore, detached, and returns
  ``(pid, seconds)``. The caller stops the daemon by its PID.
- If the daemon exits while pages are missing, the kernel gives the missing pages of the
  restored process zeros: whoever runs the daemon must kill the restored tree first.
"""

from __future__ import annotations

import contextlib
import os
import re
import signal
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

from cryostash.engines.base import Engine
from cryostash.engines.criu import CriuEngine, failure_message
from cryostash.engines.criu_binary import criu_features, is_recent
from cryostash.engines.userfaultfd import noncoop_support
from cryostash.errors import EngineError, UsageError
from cryostash.redact import child_env

DAEMON_LOG = "lazy-pages.log"
RESTORE_LOG = "restore.log"
SOCKET = "lazy-pages.socket"
FEATURE = "uffd-noncoop"
_FAULT_RE = re.compile(r"#PF at ")
_TOTAL_RE = re.compile(r"UFFD transferred pages: \((\d+)/(\d+)\)")


def lazy_support(engine: Engine, *, ask_criu: bool = True) -> str | None:
    """Why ``engine`` cannot restore lazily on this machine, or None when it can.

    ``ask_criu``: run ``criu check --feature uffd-noncoop`` (about 50 ms: the authority,
    for ``doctor`` and the checks made before a migration dumps anything); when False,
    ask the kernel directly (:mod:`cryostash.engines.userfaultfd`, well under 1 ms: the
    same features, for ``restore --lazy`` whose start-up is its time to running, or a
    migration's downtime; ``criu check`` still where the probe does not know the machine).
    """
    if not isinstance(engine, CriuEngine):
        return f"lazy restore is not supported by {engine.name} (only by the criu engine)"
    found = engine.locate()
    if found.path is None or not is_recent(found.version):
        return f"lazy restore needs CRIU >= 4.2: {engine.available().reason}"
    supported = None if ask_criu else noncoop_support()
    if supported is None:
        supported = criu_features(found.path, [FEATURE]).get(FEATURE, False)
    if not supported:
        return (
            f"lazy restore needs userfaultfd: `criu check --feature {FEATURE}` fails on this "
            "machine (kernel without userfaultfd, or vm.unprivileged_userfaultfd and no "
            "CAP_SYS_PTRACE)"
        )
    return None


def require_lazy_support(engine: Engine, *, ask_criu: bool = True) -> CriuEngine:
    """``engine`` as a :class:`CriuEngine` that can restore lazily (``ask_criu``: as
    :func:`lazy_support`).

    Raises:
        UsageError: not the criu engine. EngineError: CRIU or userfaultfd missing.
    """
    reason = lazy_support(engine, ask_criu=ask_criu)
    if reason is not None:
        if not isinstance(engine, CriuEngine):
            raise UsageError(reason)
        raise EngineError(reason)
    assert isinstance(engine, CriuEngine)
    return engine


def start_daemon(
    engine: CriuEngine, images: Path, work: Path, timeout: float = 10.0
) -> subprocess.Popen[bytes]:
    """``criu lazy-pages -D IMAGES -W WORK``, returned once it listens.

    Raises:
        EngineError: it exited or did not create its socket within ``timeout`` s (then it
            is killed).
    """
    criu, _ = engine.binary()
    cmd = [criu, "lazy-pages", "-D", str(images), "-W", str(work), "-o", DAEMON_LOG, "-v4"]
    try:
        proc = subprocess.Popen(
            cmd, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL, env=child_env(),
        )
    except OSError as exc:
        raise EngineError(f"cannot run {criu}: {exc}") from exc
    deadline = time.monotonic() + timeout
    while not (work / SOCKET).exists():
        code = proc.poll()
        if code is not None or time.monotonic() >= deadline:
            if code is None:
                stop_daemon(proc)
            raise EngineError(
                failure_message("lazy-pages", proc.returncode or -1, work / DAEMON_LOG, "")
            )
        time.sleep(0.002)
    return proc


def stop_daemon(proc: subprocess.Popen[bytes], timeout: float = 5.0) -> None:
    """Kill the daemon (by its PID) and reap it; nothing if it has exited."""
    if proc.poll() is None:
        os.kill(proc.pid, signal.SIGKILL)
    proc.wait(timeout)


def restore(
    engine: CriuEngine,
    images: Path,
    work: Path,
    root_pid: int | None,
    extra: tuple[str, ...],
    started: Callable[[int], None] = lambda pid: None,
) -> tuple[int, float]:
    """``criu restore --lazy-pages -D IMAGES -W WORK -d``: ``(root PID, seconds)``.

    Waits up to 10 s for ``root_pid`` to be free, as :meth:`CriuEngine.restore` does; the
    dump options recorded in the images that restore needs again are passed.
    ``started(pid)`` is called with the PID of ``criu restore`` as soon as it runs (the
    tree being restored is its descendants until it exits: killing that tree stops the
    restore).

    Raises:
        EngineError: the PID stays in use, or the restore failed (reason and log tail).
    """
    criu, _ = engine.binary()
    if root_pid is not None:
        deadline = time.monotonic() + 10.0
        while Path(f"/proc/{root_pid}").exists():
            if time.monotonic() >= deadline:
                raise EngineError(
                    f"PID {root_pid} is still in use after 10 s: CRIU restores the original "
                    "PIDs; stop that process (and have it reaped) first"
                )
            time.sleep(0.01)
    pidfile = work / "restore.pid"
    opts = [*CriuEngine.mirrored_options(images, extra), *extra]
    cmd = [
        criu, "restore", "--lazy-pages", "-D", str(images), "-W", str(work), "-d",
        "--pidfile", str(pidfile), "-o", RESTORE_LOG, "-v4", *opts,
    ]
    begun = time.monotonic()
    try:
        proc = subprocess.Popen(
            cmd, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
            env=child_env(),
        )
    except OSError as exc:
        raise EngineError(f"cannot run {criu}: {exc}") from exc
    with proc:
        started(proc.pid)
        out, err = proc.communicate()
    duration = time.monotonic() - begun
    if proc.returncode != 0:
        raise EngineError(
            failure_message(
                "restore", proc.returncode, work / RESTORE_LOG,
                err.decode(errors="replace"), out.decode(errors="replace"),
            )
        )
    try:
        return int(pidfile.read_text().strip()), duration
    except (OSError, ValueError) as exc:
        raise EngineError(f"criu restore succeeded but wrote no PID file: {exc}") from exc


def daemon_pages(work: Path) -> tuple[int, int, int]:
    """From the daemon's log: (pages faulted, pages copied, pages it had to copy)."""
    try:
        text = (work / DAEMON_LOG).read_text(errors="replace")
    except OSError:
        return 0, 0, 0
    faulted = len(_FAULT_RE.findall(text))
    copied = total = 0
    for match in _TOTAL_RE.finditer(text):
        copied += int(match.group(1))
        total += int(match.group(2))
    return faulted, copied, total


def daemon_failure(code: int, work: Path) -> str:
    """Why the daemon failed: its first error and the tail of its log."""
    return failure_message("lazy-pages", code, work / DAEMON_LOG, "")


def _children() -> dict[int, list[int]]:
    tree: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            text = Path(f"/proc/{entry}/stat").read_text()
        except OSError:
            continue
        ppid = int(text[text.rindex(")") + 2 :].split()[1])
        tree.setdefault(ppid, []).append(int(entry))
    return tree


def _gone(pid: int) -> bool:
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return True
    return text[text.rindex(")") + 2 :].split()[0] in ("Z", "X")


def kill_tree(pid: int, timeout: float = 5.0) -> bool:
    """SIGKILL ``pid`` and all its descendants; True once every one is dead (gone or a
    zombie) within ``timeout`` s."""
    tree = _children()
    pids, todo = [], [pid]
    while todo:
        current = todo.pop()
        pids.append(current)
        todo.extend(tree.get(current, []))
    for target in pids:
        with contextlib.suppress(ProcessLookupError):
            os.kill(target, signal.SIGKILL)
    deadline = time.monotonic() + timeout
    while not all(_gone(p) for p in pids):
        if time.monotonic() >= deadline:
            return False
        time.sleep(0.002)
    return True
