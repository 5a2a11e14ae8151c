"""``restore`` says what it waits for: CRIU restores the original PIDs, and when the
dumped process still holds its PID (a zombie its parent has not reaped yet), restore
waits up to 10 s for it; one line on stderr says so, and the restore goes on as soon as
the PID is free. When the PID is free, nothing is said. Real CRIU, the CLI as a process."""

from __future__ import annotations

import os
import queue
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from cryostash.engines.criu import CriuEngine
from cryostash.errors import EngineError
from cryostash.types import DumpOptions, RestoreOptions
from tests.support import cli
from tests.support.processes import (
    COUNTER_PROG,
    ProcessTracker,
    kill_pid,
    read_counter,
    wait_until,
)


def _lines(stream: object) -> queue.Queue[str]:
    """The lines of ``stream`` as a reader thread gets them ("" at the end)."""
    found: queue.Queue[str] = queue.Queue()

    def pump() -> None:
        for line in stream:  # type: ignore[attr-defined]
            found.put(line)
        found.put("")

    threading.Thread(target=pump, daemon=True).start()
    return found


@pytest.mark.criu
def test_restore_says_it_waits_for_the_pid_then_restores_once_it_is_free(
    criu_path: str, procs: ProcessTracker, tmp_path: Path
) -> None:
    env = cli.host_env(tmp_path, criu=criu_path)
    counter = tmp_path / "counter"
    with (tmp_path / "counter.stderr").open("wb") as err:
        # Our own child (its own session: CRIU needs no --shell-job): once dumped it stays
        # a zombie holding its PID until we reap it.
        child = subprocess.Popen(
            [sys.executable, str(COUNTER_PROG), str(counter)],
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=err,
            start_new_session=True,
        )
    try:
        procs.track(child.pid)
        read_counter(counter)
        cli.run(["create", "app", "cp1", "--pid", str(child.pid)], env)
        assert Path(f"/proc/{child.pid}/stat").read_text().rsplit(")", 1)[1].split()[0] == "Z"

        restore = subprocess.Popen(
            [sys.executable, "-m", "cryostash", "restore", "app", "cp1"],
            stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
            text=True, env=env,
        )
        try:
            lines = _lines(restore.stderr)
            line = lines.get(timeout=cli.TIMEOUT_S)
            assert line.startswith(f"waiting up to 10 s for PID {child.pid} to be free: "), line
            assert "zombie" in line and f"its parent, PID {os.getpid()}" in line, line
            assert restore.poll() is None  # it is waiting
            child.wait(timeout=10)  # reap it: the PID is free
            assert restore.stdout is not None
            out = restore.stdout.read()  # to its end: the restore has finished
            restore.wait(timeout=cli.TIMEOUT_S)
        finally:
            if restore.poll() is None:
                restore.kill()
                restore.wait()
        assert restore.returncode == 0
        assert lines.get(timeout=10) == ""  # nothing more on stderr
        pid = procs.track(int(out))
        assert pid == child.pid
        at_restore = read_counter(counter)
        wait_until(lambda: read_counter(counter) > at_restore, 10, "the restored counter")
    finally:
        if child.poll() is None:
            child.kill()
            child.wait()


@pytest.mark.criu
def test_no_notice_when_the_pid_is_free_and_the_pid_named_when_it_is_not(
    criu_path: str, procs: ProcessTracker, tmp_path: Path
) -> None:
    engine = CriuEngine(criu_path=criu_path)
    proc = procs.counter(tmp_path / "work")
    images = tmp_path / "images"
    images.mkdir(mode=0o700)
    engine.dump(str(proc.pid), images, DumpOptions(leave_running=True))
    comm = Path(f"/proc/{proc.pid}/comm").read_text().strip()
    notices: list[str] = []
    with pytest.raises(EngineError, match=f"PID {proc.pid} is still in use"):
        engine.restore(images, RestoreOptions(wait_for_pid_s=0.2, notify=notices.append))
    assert notices == [
        f"waiting up to 0.2 s for PID {proc.pid} to be free: process {comm!r} still holds "
        "it (CRIU restores the original PIDs)"
    ]

    notices.clear()
    kill_pid(proc.pid)
    result = engine.restore(images, RestoreOptions(root_pid=proc.pid, notify=notices.append))
    procs.track(result.pid)
    assert notices == []
