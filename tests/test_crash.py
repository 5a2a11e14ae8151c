"""Crash safety: ``cryostash create`` is SIGKILLed at every phase of the commit protocol.

A real CRIU dump of one counter process (``--leave-running``, shared by the module), a
real ``cryostash`` child process that SIGKILLs itself at the phase (run by
``tests/support/crashing.py``, an observer of :mod:`cryostash.hooks`), on local+SQLite and
S3(moto)+PostgreSQL. After each:

- ``ls`` never shows a broken checkpoint, and ``verify --read-data`` passes on what it shows;
- while the dead create's lease runs, gc (even with no grace) deletes none of its blobs
  and the name stays taken;
- once the lease has expired, gc finishes (complete) or undoes (incomplete) it and
  converges: a second run changes nothing, and the store holds exactly the manifests
  of listed checkpoints and the blobs they name (no temporary file, no stray, no
  scratch folder);
- the same name can be created again.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from cryostash import CheckpointExists, collect_garbage, verify_store
from cryostash.hooks import PHASES
from cryostash.storage import Manifest
from tests.support import crashing
from tests.support.processes import (
    Proc,
    ProcessTracker,
    is_dead,
    kill_pid,
    pid_exists,
    read_counter,
    wait_until,
)
from tests.support.setups import Setup, setup_fixture  # noqa: F401

#: What gc does with the abandoned create of each phase once its lease has expired.
OUTCOME = {
    "after-dump": "aborted",
    "mid-upload": "aborted",
    "after-upload": "aborted",
    "after-manifest": "committed",
    "after-commit": None,  # committed by its creator: nothing left to settle
}


@pytest.fixture(scope="module")
def counter(criu_path: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Proc]:
    """One counter process for the whole module, killed by PID at its end."""
    tracker = ProcessTracker()
    try:
        yield tracker.counter(tmp_path_factory.mktemp("counter"))
    finally:
        tracker.kill_all()


def cryostash(setup: Setup, criu: str, *args: str, crash_at: str | None = None) -> (
    subprocess.CompletedProcess[str]
):
    launcher = [str(crashing.SCRIPT), crash_at] if crash_at else ["-m", "cryostash"]
    return subprocess.run(
        [sys.executable, *launcher, *args],
        env=setup.cli_env(criu),
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
    )


def objects(setup: Setup) -> set[str]:
    return set(setup.raw.files())


def expected_objects(setup: Setup) -> set[str]:
    """The manifests of the listed checkpoints and the blobs they name."""
    want: set[str] = set()
    with setup.manager() as mgr:
        for info in mgr.list():
            data = mgr.store().read_manifest(info.target, info.name)
            want.add(f"checkpoints/{info.target}/{info.name}/manifest.json")
            want |= {f"blobs/{d[:2]}/{d}" for d in Manifest.from_bytes(data).blob_digests}
    return want


def scratch_entries(setup: Setup) -> list[str]:
    return sorted(os.listdir(setup.scratch)) if setup.scratch.exists() else []


@pytest.mark.criu
@pytest.mark.slow
@pytest.mark.parametrize("phase", PHASES)
def test_a_create_killed_at_each_phase_leaves_nothing_broken(
    setup: Setup, counter: Proc, criu_path: str, phase: str
) -> None:
    pid = str(counter.pid)
    done = cryostash(setup, criu_path, "create", "app", "cp", "--pid", pid, "--leave-running",
                     crash_at=phase)
    assert done.returncode == -signal.SIGKILL, (done.returncode, done.stderr)
    assert pid_exists(counter.pid), "the counter must outlive a crashed --leave-running dump"
    assert len(scratch_entries(setup)) == 1, "the killed create left its scratch folder"
    committed_by_creator = phase == "after-commit"

    with setup.manager(criu=criu_path) as mgr:
        shown = [(i.target, i.name) for i in mgr.list()]
        assert shown == ([("app", "cp")] if committed_by_creator else [])
        assert verify_store(mgr.repository, read_data=True).ok
        pending = [(i.target, i.name) for i in mgr.catalog.pending()]
        assert pending == ([] if committed_by_creator else [("app", "cp")])

        # The lease runs: gc, even with no grace period, keeps every blob it has.
        blobs = {o for o in objects(setup) if o.startswith("blobs/") and ".tmp" not in o}
        report = collect_garbage(mgr.repository, grace_s=0)
        assert report.ok and not report.committed and not report.aborted
        assert report.blobs_deleted == 0 and blobs <= objects(setup)
        assert len(report.scratch_deleted) == 1 and scratch_entries(setup) == []
        with pytest.raises(CheckpointExists):
            mgr.create("app", "cp", locator=pid, leave_running=True)

    assert setup.expire_leases() == (0 if committed_by_creator else 1)
    with setup.manager(criu=criu_path) as mgr:
        report = collect_garbage(mgr.repository, grace_s=0)
        assert report.ok, report.errors
        outcome = OUTCOME[phase]
        assert report.committed == (("app/cp",) if outcome == "committed" else ())
        assert report.aborted == (("app/cp",) if outcome == "aborted" else ())
        again = collect_garbage(mgr.repository, grace_s=0)
        assert again.ok and not again.changed, again.as_dict()
        shown = [(i.target, i.name) for i in mgr.list()]
        assert shown == ([] if outcome == "aborted" else [("app", "cp")])
        assert verify_store(mgr.repository, read_data=True).ok
        assert mgr.catalog.pending() == []
    assert objects(setup) == expected_objects(setup)

    if shown:
        assert cryostash(setup, criu_path, "rm", "app", "cp").returncode == 0
    again_done = cryostash(setup, criu_path, "create", "app", "cp", "--pid", pid,
                           "--leave-running")
    assert again_done.returncode == 0, again_done.stderr
    with setup.manager(criu=criu_path) as mgr:
        assert [(i.target, i.name) for i in mgr.list()] == [("app", "cp")]
        final = verify_store(mgr.repository, read_data=True)
        assert final.ok, (final.problems, again_done.stderr, done.stderr)
    assert objects(setup) == expected_objects(setup)
    assert scratch_entries(setup) == []



@pytest.mark.criu
@pytest.mark.parametrize("setup", ["local-sqlite"], indirect=True)
def test_gc_keeps_the_image_of_a_process_a_crashed_create_had_stopped(
    setup: Setup, criu_path: str, procs: ProcessTracker, tmp_path: Path
) -> None:
    """Without --leave-running the dump stops the process; a create killed before the
    checkpoint is stored leaves the only copy of that process in its scratch folder: gc
    moves it to ``kept-...`` (with a note) instead of deleting it, and CRIU restores the
    process from there, memory and all."""
    counter = procs.counter(tmp_path)
    assert counter.counter_path is not None
    done = cryostash(setup, criu_path, "create", "app", "cp", "--pid", str(counter.pid),
                     crash_at="mid-upload")
    assert done.returncode == -signal.SIGKILL, (done.returncode, done.stderr)
    wait_until(lambda: is_dead(counter.pid), 10, "the dumped counter to end")
    stopped_at = read_counter(counter.counter_path)
    with setup.manager(criu=criu_path) as mgr:
        report = collect_garbage(mgr.repository, grace_s=0, dry_run=True)
        assert report.scratch_deleted == () and len(report.scratch_kept) == 1
        report = collect_garbage(mgr.repository, grace_s=0)
    assert report.scratch_deleted == () and len(report.scratch_kept) == 1
    kept = Path(report.scratch_kept[0])
    assert kept.name.startswith("kept-create-app-cp-")
    assert "stopped the process" in (kept / "NOTE").read_text()
    assert scratch_entries(setup) == [kept.name]
    kill_pid(counter.pid)  # reaped: CRIU restores the same PID
    # Same size (CRIU checks the size of open files): a restarted counter would write 1, 2...
    counter.counter_path.write_text(f"{0:019d} {0:019d}\n")
    restored = subprocess.run(
        [criu_path, "restore", "-D", str(kept), "-d", "--pidfile", "r.pid", "-o", "r.log"],
        capture_output=True, text=True, timeout=60, check=False,
    )
    assert restored.returncode == 0, restored.stderr
    procs.track(int((kept / "r.pid").read_text()))
    path = counter.counter_path
    wait_until(lambda: read_counter(path) != 0, 10, "the restored counter to write")
    assert read_counter(path) >= stopped_at  # it went on from where it was: memory came back
