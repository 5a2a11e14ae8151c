"""Quickstart: checkpoint a running counter into the default store, list it, restore it.

Run as root (CRIU needs it) after `make criu`, or simply `make demo`. Uses the
embedded default: a local store and a SQLite catalog under /var/lib/cryostash
(see docs/cli.md). Every step is a plain `cryostash` command, printed as it runs.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from services import read_counter, wait_for

HERE = Path(__file__).resolve().parent
CRYOSTASH = [sys.executable, "-m", "cryostash"]
TARGET = "quickstart"


def cryostash(*args: str) -> str:
    """Run one cryostash command, echo it and its output, return stdout."""
    print(f"$ cryostash {' '.join(args)}", flush=True)
    done = subprocess.run([*CRYOSTASH, *args], capture_output=True, text=True)
    if done.stdout:
        print(done.stdout.rstrip())
    if done.returncode != 0:
        sys.exit(f"cryostash {args[0]} failed ({done.returncode}): {done.stderr.strip()}")
    return done.stdout


def main() -> None:
    if os.geteuid() != 0:
        sys.exit("the quickstart needs root (CRIU does): run it with sudo or as root")
    work = Path(tempfile.mkdtemp(prefix="cryostash-quickstart-"))
    counter = work / "counter"
    name = time.strftime("demo-%Y%m%d-%H%M%S")
    proc = subprocess.Popen(
        [sys.executable, str(HERE / "counter.py"), str(counter)],
        stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        start_new_session=True, cwd=work,
    )
    restored_pid = None
    try:
        wait_for(lambda: read_counter(counter) >= 10, 10, "the counter to reach 10")
        print(f"counter process {proc.pid} is at {read_counter(counter)}")
        cryostash("create", TARGET, name, "--pid", str(proc.pid), "--label", "example=quickstart")
        proc.wait(timeout=10)  # CRIU ended it after the dump; reap it so its PID is free
        frozen_at = read_counter(counter)
        print(f"process {proc.pid} is gone; its counter stopped at {frozen_at}")
        cryostash("ls", TARGET)
        restored_pid = json.loads(cryostash("restore", TARGET, name, "--json"))["pid"]
        first = read_counter(counter)
        wait_for(lambda: read_counter(counter) >= frozen_at + 10, 10, "the counter to go on")
        now = read_counter(counter)
        print(f"restored as PID {restored_pid}: counter went on from {frozen_at} to {now}")
        if first < frozen_at:
            sys.exit(f"counter restarted from {first}: memory was not restored")
        cryostash("events", TARGET)
    finally:
        for pid in (restored_pid, proc.pid):
            if pid:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
        if proc.poll() is None:
            proc.wait(timeout=10)
        shutil.rmtree(work, ignore_errors=True)
    cryostash("rm", TARGET, name)
    print("quickstart: OK")


if __name__ == "__main__":
    main()
