"""The processes CRIU is asked to dump or whose PID a restore needs: which PID may be
dumped (:func:`validate_pid`), whether one is dead, who holds one, and waiting for it to
be free. Read from ``/proc``; nothing here runs CRIU.
"""

from __future__ import annotations

import os
import re
import time
from collections.abc import Callable
from pathlib import Path

from cryostash.errors import UsageError
from cryostash.types import RestoreOptions

_PF_KTHREAD = 0x00200000


def _proc_stat(pid: int) -> list[str] | None:
    """Fields of ``/proc/PID/stat`` after the command name (state first), or None."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return text[text.rindex(")") + 2 :].split()


def _ancestors() -> set[int]:
    """This process and all its ancestors."""
    seen: set[int] = set()
    pid = os.getpid()
    while pid > 0 and pid not in seen:
        seen.add(pid)
        stat = _proc_stat(pid)
        pid = int(stat[1]) if stat else 0
    return seen


def validate_pid(locator: str) -> int:
    """Check that ``locator`` names a process CRIU may dump, and return its PID.

    Raises:
        UsageError: not an integer > 1, no such process, a thread or kernel thread,
            or this process or one of its ancestors (freezing it would hang us).
    """
    text = locator.strip()
    if not (text.isascii() and text.isdigit()):
        raise UsageError(f"invalid PID {locator!r}: expected a process ID (an integer > 1)")
    pid = int(text)
    if pid <= 1:
        raise UsageError(f"refusing to checkpoint PID {pid}: expected a process ID > 1")
    stat = _proc_stat(pid)
    if stat is None:
        raise UsageError(f"no process with PID {pid}")
    if int(stat[6]) & _PF_KTHREAD:
        raise UsageError(f"PID {pid} is a kernel thread: it cannot be checkpointed")
    if stat[0] == "Z":
        raise UsageError(f"PID {pid} is a zombie (it has exited): nothing to checkpoint")
    tgid = _tgid(pid)
    if tgid != pid:
        raise UsageError(f"PID {pid} is a thread of process {tgid}: checkpoint {tgid} instead")
    if pid in _ancestors():
        raise UsageError(
            f"refusing to checkpoint PID {pid}: it is this cryostash process or one of its "
            "ancestors (it would be frozen while it waits for the dump)"
        )
    return pid


def _tgid(pid: int) -> int:
    """The thread group (process) that ``pid`` belongs to (``pid`` itself for a process)."""
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return pid
    match = re.search(r"^Tgid:\s*(\d+)", status, re.MULTILINE)
    return int(match.group(1)) if match else pid


def pid_dead(pid: int) -> bool:
    stat = _proc_stat(pid)
    return stat is None or stat[0] in ("Z", "X")


def describe(pid: int) -> str:
    try:
        comm = Path(f"/proc/{pid}/comm").read_text().strip()
    except OSError:
        return "a process that just exited"
    stat = _proc_stat(pid)
    if stat and stat[0] == "Z":
        return f"a zombie ({comm}) that its parent, PID {stat[1]}, has not reaped"
    return f"process {comm!r}"


def wait_for_pid(pid: int, options: RestoreOptions) -> bool:
    """Wait up to ``options.wait_for_pid_s`` for ``pid`` to be free (True) or not (False);
    if it is in use now, tell ``options.notify`` what is awaited first."""

    def free() -> bool:
        return not Path(f"/proc/{pid}").exists()

    if free():
        return True
    if options.notify is not None:
        options.notify(
            f"waiting up to {options.wait_for_pid_s:g} s for PID {pid} to be free: "
            f"{describe(pid)} still holds it (CRIU restores the original PIDs)"
        )
    return wait(free, options.wait_for_pid_s)


def wait(predicate: Callable[[], bool], timeout: float, interval: float = 0.01) -> bool:
    """Poll ``predicate`` until true (True) or until ``timeout`` seconds pass (False)."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() >= deadline:
            return False
        time.sleep(interval)
    return True
