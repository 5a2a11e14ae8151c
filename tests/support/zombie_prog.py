"""Test program: a process tree holding a zombie child and a stopped child (like
checkpointctl's ``piggie --zombie``), whose parent counts in memory.

Usage: ``python zombie_prog.py PATH``.

The parent forks a child that exits at once and is never reaped (a zombie), and a child
that stops itself with ``SIGSTOP``; once the first has exited and the second has stopped
(waited for without reaping), it writes ``"ZOMBIE_PID STOPPED_PID\\n"`` to ``PATH.pids``
and then publishes a count kept in memory in ``PATH`` every ~50 ms, as ``counter_prog.py``
does. Killing the parent frees both children: the stopped one must be killed by its PID.
"""

import os
import signal
import sys
import time

RECORD = "{0:019d} {0:019d}\n"


def main() -> None:
    path = sys.argv[1]
    zombie = os.fork()
    if zombie == 0:
        os._exit(0)
    stopped = os.fork()
    if stopped == 0:
        os.kill(os.getpid(), signal.SIGSTOP)
        while True:  # only if someone sends SIGCONT
            time.sleep(1)
    os.waitid(os.P_PID, zombie, os.WEXITED | os.WNOWAIT)  # exited, left unreaped
    os.waitpid(stopped, os.WUNTRACED)
    tmp = f"{path}.pids.tmp"
    with open(tmp, "w") as fh:
        fh.write(f"{zombie} {stopped}\n")
    os.replace(tmp, f"{path}.pids")
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    n = 0
    while True:
        os.pwrite(fd, RECORD.format(n).encode(), 0)
        n += 1
        time.sleep(0.05)


if __name__ == "__main__":
    main()
