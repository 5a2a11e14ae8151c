"""One worker of the load test (test support): ``python load_worker.py TARGET PID``.

Settings come from the environment (``CRYOSTASH_*``, as the CLI reads them). On its own
counter process PID, as checkpoint TARGET: create ``first`` (leave running), list, create
``second`` (leave running), kill the counter and restore ``second`` (the same PID comes back),
remove ``first``, list TARGET. Prints ``ok`` and exits 0, or lets the error end it (exit 1).
"""

from __future__ import annotations

import os
import signal
import sys
import time


def _wait_gone(pid: int, deadline_s: float = 30.0) -> None:
    deadline = time.monotonic() + deadline_s
    while os.path.exists(f"/proc/{pid}"):
        if time.monotonic() > deadline:
            raise SystemExit(f"PID {pid} still exists after {deadline_s} s")
        time.sleep(0.02)


def main() -> None:
    from cryostash import CheckpointManager
    from cryostash.config import resolve_settings

    target, pid = sys.argv[1], int(sys.argv[2])
    with CheckpointManager(resolve_settings(), jobs=2) as mgr:
        mgr.create(target, "first", locator=str(pid), leave_running=True)
        mgr.list()
        mgr.create(target, "second", locator=str(pid), leave_running=True)
        os.kill(pid, signal.SIGKILL)
        _wait_gone(pid)  # reaped by init: CRIU needs the PID free
        restored = mgr.restore(target, "second")
        assert restored.pid == pid, (restored.pid, pid)
        mgr.remove(target, "first")
        names = [i.name for i in mgr.list(target)]
        assert names == ["second"], names
    print("ok")


if __name__ == "__main__":
    main()
