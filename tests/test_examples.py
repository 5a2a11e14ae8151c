"""The multi-host examples run end to end, as a user runs them (issue 7).

Each example is started as its own process, exactly as documented (``python
examples/NAME.py``): it starts its own moto server and PostgreSQL cluster, runs real CRIU
through the ``cryostash`` CLI, checks what it shows and exits non-zero if any of it fails.
These tests assert that it succeeded, printed the figures it promises, and left no process
behind. Locally they skip without CRIU, moto or PostgreSQL; under ``CI=true`` they fail.
"""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.support import postgres
from tests.support.requirements import missing

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"


def _leftovers(marker: str) -> list[str]:
    """Command lines of live processes that mention ``marker`` (the example's temp dir)."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode()
        except OSError:
            continue
        if marker in cmdline:
            found.append(f"{entry.name}: {cmdline}")
    return found


def run_example(
    name: str, tmp_path: Path, criu_path: str, *args: str, timeout: float = 300
) -> str:
    """Run ``examples/NAME.py ARGS`` with its temporary files under ``tmp_path``; its output."""
    if importlib.util.find_spec("moto") is None:
        missing("S3 (moto)", "moto[server] is not installed")
    if not (postgres.PG_BIN / "initdb").is_file():
        missing("PostgreSQL", f"{postgres.PG_BIN / 'initdb'} not found")
    env = {k: v for k, v in os.environ.items() if not k.startswith("CRYOSTASH_")}
    env.update({"TMPDIR": str(tmp_path), "CRYOSTASH_CRIU": criu_path})
    done = subprocess.run(
        [sys.executable, str(EXAMPLES / f"{name}.py"), *args],
        env=env, capture_output=True, text=True, timeout=timeout,
    )
    output = done.stdout + done.stderr
    assert done.returncode == 0, f"{name} failed ({done.returncode}):\n{output}"
    assert done.stdout.rstrip().endswith(f"{name.replace('_', '-')}: OK"), output
    assert _leftovers(str(tmp_path)) == [], "the example left processes running"
    return output


@pytest.mark.usefixtures("procs")
def test_sharing_example(tmp_path: Path, criu_path: str) -> None:
    out = run_example("sharing", tmp_path, criu_path)
    assert "every host sees the same checkpoints" in out
    assert "[host-b] restored shared-app/handover" in out
    assert "[host-c] restored shared-app/evening" in out


@pytest.mark.usefixtures("procs")
def test_disaster_recovery_example(tmp_path: Path, criu_path: str) -> None:
    out = run_example("disaster_recovery", tmp_path, criu_path)
    assert "retention (--keep-last 3) kept archive-3, archive-4, archive-5" in out
    assert "catalog rebuild: 3 checkpoints recovered" in out
    assert "[host-b] restored archived-app/archive-5" in out


@pytest.mark.usefixtures("procs")
def test_live_migration_example(tmp_path: Path, criu_path: str) -> None:
    out = run_example("live_migration", tmp_path, criu_path)
    assert "[host-b] PID" in out and "[host-c] PID" in out  # the counter went on at both
    rows = {line[:34].strip(): line[34:].split() for line in out.splitlines()
            if line.startswith(("downtime", "final step", "first step"))}
    # "1214 ms 2450 ms" / "1.59 MiB 64.58 MiB": two figures per row, one per migration.
    downtime = [float(v) for v in rows["downtime (freeze -> running)"][::2]]
    downloaded = [float(v) for v in rows["final step: downloaded"][::2]]
    assert len(downtime) == 2 and all(d > 0 for d in downtime)
    assert downloaded[0] * 4 < downloaded[1]  # prefetch spared most of the final download


@pytest.mark.usefixtures("procs")
def test_live_migration_example_lazy(tmp_path: Path, criu_path: str) -> None:
    done = subprocess.run([criu_path, "check", "--feature", "uffd-noncoop"],
                          capture_output=True, text=True, check=False, timeout=60)
    if done.returncode != 0 or not Path("/dev/fuse").exists():
        missing("userfaultfd and FUSE", done.stdout + done.stderr)
    out = run_example("live_migration", tmp_path, criu_path, "--lazy")
    assert "[host-a] PID" in out and "[host-a] lazy restore: running after" in out
    rows = {line[:34].strip(): line[34:].split() for line in out.splitlines()
            if line.startswith(("downtime", "final step"))}
    assert len(rows["downtime (freeze -> running)"]) == 6  # three migrations, "N ms" each
    assert rows["final step: downloaded"][-1] == "lazy"  # the pages came after
