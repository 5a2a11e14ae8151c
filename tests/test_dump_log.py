"""CRIU's ``dump.log``: a checkpoint keeps its head and tail (not ~440 KB of new bytes each
time), ``inspect --log`` prints it, a failed dump still reports its own log's words."""

from __future__ import annotations

import json
import sys
from pathlib import Path

from cryostash.engines.criu_images import LOG_HEAD, LOG_TAIL, trim_log
from tests.support import cli
from tests.support.processes import ProcessTracker, start_detached, wait_until

MEMORY_PROG = Path(__file__).resolve().parent / "support" / "memory_prog.py"


def _lines(count: int) -> bytes:
    return b"".join(b"(00.%06d) line %d of the log\n" % (i, i) for i in range(count))


def test_trim_keeps_whole_lines_of_head_and_tail(tmp_path: Path) -> None:
    log = tmp_path / "dump.log"
    data = _lines(20000)  # ~600 KB
    log.write_bytes(data)
    omitted = trim_log(log)
    kept = log.read_bytes()
    head, rest = kept.split(b"(cryostash) ", 1)
    note, tail = rest.split(b"\n", 1)
    assert data.startswith(head) and len(head) <= LOG_HEAD
    assert data.endswith(tail) and len(tail) <= LOG_TAIL
    assert len(data) - len(head) - len(tail) == omitted > 0
    assert note.startswith(b"... %d bytes of this log left out" % omitted)
    assert tail.endswith(b"line 19999 of the log\n") and tail.startswith(b"(00.")
    assert not list(tmp_path.glob("*.trimmed"))


def test_short_or_missing_log_is_left_alone(tmp_path: Path) -> None:
    log = tmp_path / "dump.log"
    data = _lines(100)
    log.write_bytes(data)
    assert trim_log(log) == 0 and log.read_bytes() == data
    assert trim_log(tmp_path / "none.log") == 0 and not (tmp_path / "none.log").exists()


def test_checkpoint_stores_the_log_head_and_tail_and_inspect_prints_it(
    tmp_path: Path, criu_path: str, procs: ProcessTracker
) -> None:
    status = tmp_path / "status"
    proc = start_detached(
        [sys.executable, str(MEMORY_PROG), "64", str(status)], tmp_path, "memory"
    )
    procs.track(proc.pid)
    wait_until(lambda: status.exists() and status.read_text() == "0", 60, "memory in place")
    env = cli.host_env(tmp_path, criu=criu_path)
    cli.run(["create", "mem", "one", "--pid", str(proc.pid), "--leave-running"], env)
    shown = json.loads(cli.run(["inspect", "mem", "one", "--json"], env).stdout)
    stored = {f["path"]: f["size"] for f in shown["files"]}
    log = cli.run(["inspect", "mem", "one", "--log"], env).stdout
    assert stored["dump.log"] == len(log.encode()) <= LOG_HEAD + LOG_TAIL + 200
    lines = log.splitlines()
    assert "CRIU run id" in lines[0] and any("Version:" in line for line in lines[:5])
    assert sum("bytes of this log left out" in line for line in lines) == 1
    assert lines[-1].endswith("Dumping finished successfully")
    # A missing checkpoint is reported as such (exit 3), not as a missing log.
    missing = cli.run(["inspect", "mem", "two", "--log"], env, check=False)
    assert missing.returncode == 3
    assert "checkpoint two does not exist for container mem" in missing.stderr
