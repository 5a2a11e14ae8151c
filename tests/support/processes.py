"""Real processes for CRIU tests: started fully detached, stopped by PID.

Every process started here is *fully detached* from the test process: a launcher
forks, the grandchild calls ``setsid()`` (so it leads its own session and process
group, and CRIU needs no ``--shell-job``), points stdin/stdout at ``/dev/null`` and
stderr at a file in the work folder, writes its PID file and execs the program; the
launcher exits at once and is reaped here. The program is therefore never a child
of the test process: when CRIU dumps and kills it, init reaps it and its PID
becomes free for the restore (a child of ours would stay a zombie holding the PID).

Every test that starts a process must stop it: use the ``procs`` fixture
(:class:`ProcessTracker`), which kills what it tracks when the test ends.

Waiting is always on a condition with a deadline (:func:`wait_until`), never a bare
sleep.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import TypeVar

T = TypeVar("T")

SUPPORT_DIR = Path(__file__).resolve().parent
COUNTER_PROG = SUPPORT_DIR / "counter_prog.py"
TCP_SERVER_PROG = SUPPORT_DIR / "tcp_server_prog.py"
ZOMBIE_PROG = SUPPORT_DIR / "zombie_prog.py"

# Runs in the launcher process: fork; the grandchild detaches and execs the program.
_LAUNCHER = """
import os, sys
pidfile, errfile, workdir = sys.argv[1:4]
argv = sys.argv[4:]
if os.fork():
    os._exit(0)
os.setsid()
os.chdir(workdir)
null = os.open(os.devnull, os.O_RDWR)
err = os.open(errfile, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
os.dup2(null, 0)
os.dup2(null, 1)
os.dup2(err, 2)
os.close(null)
os.close(err)
tmp = pidfile + ".tmp"
with open(tmp, "w") as fh:
    fh.write(str(os.getpid()))
os.replace(tmp, pidfile)
os.execv(argv[0], argv)
"""


@dataclass(frozen=True)
class Proc:
    """A detached test process.

    Attributes:
        pid: its PID (not a child of the test process).
        workdir: its working folder (holds its PID file and stderr file).
        stderr_path: where its stderr goes (read it when a test fails).
        counter_path: the counter file, for :func:`start_counter` processes.
        port: the TCP port on 127.0.0.1, for :func:`start_tcp_server` processes.
    """

    pid: int
    workdir: Path
    stderr_path: Path
    counter_path: Path | None = None
    port: int | None = None


def wait_until(
    predicate: Callable[[], T | None], timeout: float, what: str, interval: float = 0.01
) -> T:
    """Poll ``predicate`` until it returns a truthy value, and return that value.

    Raises:
        AssertionError: naming ``what``, when ``timeout`` seconds pass first.
    """
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() >= deadline:
            raise AssertionError(f"timed out after {timeout:g} s waiting for {what}")
        time.sleep(interval)


def pid_exists(pid: int) -> bool:
    """True while ``/proc/PID`` exists (a zombie still counts: it holds the PID)."""
    return Path(f"/proc/{pid}").exists()


def is_dead(pid: int) -> bool:
    """True when ``pid`` has exited: gone, or a zombie waiting to be reaped."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return True
    return stat.rsplit(")", 1)[1].split()[0] in ("Z", "X")


def wait_pid_gone(pid: int, timeout: float = 10.0) -> None:
    """Wait until PID ``pid`` is free (the process exited *and* was reaped).

    On the CI machines PID 1 reaps orphans only every ~2 s: expect up to 2 s here.
    """
    wait_until(lambda: not pid_exists(pid), timeout, f"PID {pid} to be gone")


def kill_pid(pid: int, timeout: float = 10.0) -> None:
    """SIGKILL ``pid`` and wait until it is gone. Safe if it is already gone."""
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGKILL)
    wait_pid_gone(pid, timeout)


def start_detached(argv: list[str], workdir: Path, name: str, timeout: float = 10.0) -> Proc:
    """Start ``argv`` fully detached (see the module docstring) and return it.

    ``workdir/NAME.pid`` and ``workdir/NAME.stderr`` are its PID and stderr files.
    """
    workdir.mkdir(parents=True, exist_ok=True)
    pidfile = workdir / f"{name}.pid"
    errfile = workdir / f"{name}.stderr"
    pidfile.unlink(missing_ok=True)
    launcher = subprocess.run(
        [sys.executable, "-c", _LAUNCHER, str(pidfile), str(errfile), str(workdir), *argv],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        start_new_session=True,
        timeout=timeout,
        check=False,
    )
    if launcher.returncode != 0:
        raise AssertionError(f"launcher for {name} failed: {launcher.stderr.decode()}")
    text = wait_until(
        lambda: pidfile.read_text() if pidfile.exists() else "", timeout, f"{pidfile}"
    )
    return Proc(pid=int(text), workdir=workdir, stderr_path=errfile)


def _parse_counter(raw: bytes) -> int | None:
    parts = raw.split()
    if len(parts) != 2 or parts[0] != parts[1] or not parts[0].isdigit():
        return None  # not written yet, or a torn read: the halves differ
    return int(parts[0])


def peek_counter(path: Path) -> int | None:
    """The value a counter program published in ``path`` now; None while the file is
    missing, empty or caught mid-write."""
    try:
        return _parse_counter(path.read_bytes())
    except FileNotFoundError:
        return None


def read_counter(path: Path, timeout: float = 5.0) -> int:
    """Read the value a counter program published in ``path``.

    Retries (until ``timeout``) while the file is missing, empty or caught mid-write.
    """

    def attempt() -> tuple[int] | None:  # a 1-tuple stays truthy for a count of 0
        try:
            value = _parse_counter(path.read_bytes())
        except FileNotFoundError:
            return None
        return None if value is None else (value,)

    return wait_until(attempt, timeout, f"a readable counter in {path}")[0]


def start_counter(workdir: Path, interval: float = 0.05, timeout: float = 10.0) -> Proc:
    """Start a detached counter process writing ``workdir/counter``; wait until it counts.

    The count lives in memory only (see ``counter_prog.py``): a restored process
    goes on from where it was dumped, a restarted one would start again from 0.
    """
    counter = workdir / "counter"
    proc = start_detached(
        [sys.executable, str(COUNTER_PROG), str(counter), str(interval)], workdir, "counter"
    )
    try:
        read_counter(counter, timeout)
    except BaseException:
        kill_pid(proc.pid)
        raise
    return Proc(proc.pid, proc.workdir, proc.stderr_path, counter_path=counter)


@dataclass(frozen=True)
class ZombieTree:
    """A :func:`start_zombie_tree` process: the counting parent, its unreaped child
    (a zombie) and its stopped child."""

    proc: Proc
    zombie: int
    stopped: int


def start_zombie_tree(workdir: Path, timeout: float = 10.0) -> ZombieTree:
    """Start ``zombie_prog.py`` detached; wait until its zombie exited, its other child
    stopped and it counts (see the program)."""
    counter = workdir / "counter"
    proc = start_detached([sys.executable, str(ZOMBIE_PROG), str(counter)], workdir, "zombie")
    pids = Path(f"{counter}.pids")
    try:
        text = wait_until(lambda: pids.read_text() if pids.exists() else "", timeout, str(pids))
        read_counter(counter, timeout)
    except BaseException:
        kill_pid(proc.pid)
        raise
    zombie, stopped = map(int, text.split())
    return ZombieTree(
        Proc(proc.pid, proc.workdir, proc.stderr_path, counter_path=counter), zombie, stopped
    )


def tcp_request(port: int, line: str, timeout: float = 5.0) -> str:
    """Send one request line to a test TCP server on 127.0.0.1 and return its reply line."""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as conn:
        conn.sendall(line.encode() + b"\n")
        buf = b""
        while not buf.endswith(b"\n"):
            chunk = conn.recv(4096)
            if not chunk:
                break
            buf += chunk
    return buf.decode().rstrip("\n")


def _answers(port: int) -> bool:
    try:
        return tcp_request(port, "PING", timeout=1.0) == "PONG"
    except OSError:
        return False


def wait_serving(port: int, timeout: float = 10.0) -> None:
    """Wait until the test TCP server on ``port`` answers ``PING``."""
    wait_until(lambda: _answers(port), timeout, f"a TCP server answering on port {port}")


def start_tcp_server(workdir: Path, port: int, timeout: float = 10.0) -> Proc:
    """Start a detached in-memory key-value TCP server on 127.0.0.1:``port``; wait for it.

    See ``tcp_server_prog.py`` for its protocol (``SET``/``GET``/``STATS``/``PING``).
    """
    proc = start_detached(
        [sys.executable, str(TCP_SERVER_PROG), str(port)], workdir, f"tcp-server-{port}"
    )
    try:
        wait_serving(port, timeout)
    except BaseException:
        kill_pid(proc.pid)
        raise
    return Proc(proc.pid, proc.workdir, proc.stderr_path, port=port)


def free_port() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def _is_test_program(pid: int) -> bool:
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return False
    return str(SUPPORT_DIR).encode() in cmdline


class ProcessTracker:
    """Remembers the PIDs a test started (or restored) and kills them at the end.

    Only PIDs whose command line runs a program from ``tests/support`` are killed,
    so a PID reused by an unrelated process after the test is left alone.
    """

    def __init__(self) -> None:
        self.pids: list[int] = []

    def track(self, pid: int) -> int:
        """Remember ``pid`` for :meth:`kill_all`; return it."""
        if pid not in self.pids:
            self.pids.append(pid)
        return pid

    def counter(self, workdir: Path, interval: float = 0.05) -> Proc:
        """:func:`start_counter`, tracked."""
        proc = start_counter(workdir, interval)
        self.track(proc.pid)
        return proc

    def tcp_server(self, workdir: Path, port: int) -> Proc:
        """:func:`start_tcp_server`, tracked."""
        proc = start_tcp_server(workdir, port)
        self.track(proc.pid)
        return proc

    def zombie_tree(self, workdir: Path) -> ZombieTree:
        """:func:`start_zombie_tree`, tracked (the parent and its stopped child)."""
        tree = start_zombie_tree(workdir)
        self.track(tree.stopped)
        self.track(tree.proc.pid)
        return tree

    def kill_all(self, timeout: float = 10.0) -> None:
        """SIGKILL every tracked test program still running; wait until each is dead.

        Dead means exited (a zombie counts): init reaps it later. (On the CI machines
        PID 1 reaps orphans only every ~2 s; use :func:`kill_pid` when the PID must be
        free again, e.g. before a restore.)
        """
        victims = [pid for pid in self.pids if _is_test_program(pid)]
        for pid in victims:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        for victim in victims:
            wait_until(partial(is_dead, victim), timeout, f"PID {victim} to die")
        self.pids.clear()
