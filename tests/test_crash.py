"""Crash safety: ``cryostash create`` is SIGKILLed at every phase of the commit protocol.

A real CRIU dump of one counter process (``--leave-running``, shared by the module), a
real ``cryostash`` child process that SIGKILLs itself at the phase (run by
``tests/support/crashing.py``, an observer of :mod:`cryostash.hooks`), on local+SQLite and
S3(moto)+PostgreSQL. After each:

- ``ls`` never shows a broken checkpoint, and ``verify --read-data`` passes on what it shows;
- on the host that ran it, the next create of the name succeeds at once (its creator is
  provably dead), without gc and without waiting for the lease;
- on another host, while the lease runs, gc (even with no grace) deletes none of its blobs
  and the name is refused saying who holds it; once the lease has expired, gc finishes
  (complete) or undoes (incomplete) it and converges: a second run changes nothing, and
  the store holds exactly the manifests of listed checkpoints and the blobs they name (no
  temporary file, no stray, no scratch folder); the name can be created again.

A live create (held at a phase) keeps its name against both, and gc with no grace does
not make it fail.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import pytest

from cryostash import CheckpointExists, CheckpointManager, collect_garbage, verify_store
from cryostash.hooks import PHASES
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
from tests.support.setups import SHAPES, Setup, setup_fixture  # noqa: F401

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


def scratch_entries(setup: Setup) -> list[str]:
    return sorted(os.listdir(setup.scratch)) if setup.scratch.exists() else []


def other_host(setup: Setup, criu: str) -> CheckpointManager:
    """A manager on host-b (its own scratch folder): what another machine sees."""
    settings = replace(
        setup.settings(criu, host="host-b"), scratch_dir=setup.scratch.parent / "scratch-b"
    )
    return CheckpointManager(settings)


def crash(setup: Setup, criu: str, pid: str, phase: str) -> subprocess.CompletedProcess[str]:
    done = cryostash(setup, criu, "create", "app", "cp", "--pid", pid, "--leave-running",
                     crash_at=phase)
    assert done.returncode == -signal.SIGKILL, (done.returncode, done.stderr)
    assert len(scratch_entries(setup)) == 1, "the killed create left its scratch folder"
    return done


@pytest.mark.criu
@pytest.mark.slow
@pytest.mark.parametrize("phase", PHASES)
def test_a_create_killed_at_each_phase_frees_its_name_on_its_host_at_once(
    setup: Setup, counter: Proc, criu_path: str, phase: str
) -> None:
    """The same host knows the creator is dead (PID gone, scratch lock free): the next
    create of the name undoes the reservation and succeeds, without gc and without
    waiting for the lease (an hour here)."""
    pid = str(counter.pid)
    crash(setup, criu_path, pid, phase)
    assert pid_exists(counter.pid), "the counter must outlive a crashed --leave-running dump"
    with setup.manager(criu=criu_path) as mgr:
        shown = [(i.target, i.name) for i in mgr.list()]
        assert shown == ([("app", "cp")] if phase == "after-commit" else [])
        assert verify_store(mgr.repository, read_data=True).ok

    env = {**setup.cli_env(criu_path), "CRYOSTASH_LEASE": "1h"}
    again = subprocess.run(
        [sys.executable, "-m", "cryostash", "create", "app", "cp", "--pid", pid,
         "--leave-running"],
        env=env, capture_output=True, text=True, timeout=180, check=False,
    )
    if phase == "after-commit":  # committed by its creator: Docker's message
        assert again.returncode == 4
        assert "checkpoint with name cp already exists for container app" in again.stderr
    else:
        assert again.returncode == 0, again.stderr
    with setup.manager(criu=criu_path) as mgr:
        assert [(i.target, i.name) for i in mgr.list()] == [("app", "cp")]
        assert mgr.catalog.pending() == []
        assert verify_store(mgr.repository, read_data=True).ok
        undone = [e for e in mgr.events("app") if e.action == "gc-abort"]
        assert len(undone) == (0 if phase == "after-commit" else 1)
        report = collect_garbage(mgr.repository, grace_s=0)  # the dead one's scratch, strays
        assert report.ok and not report.committed and not report.aborted
    assert objects(setup) == setup.expected_objects()
    assert scratch_entries(setup) == []


@pytest.mark.criu
@pytest.mark.slow
@pytest.mark.parametrize("phase", PHASES)
def test_a_create_killed_at_each_phase_is_settled_by_another_host_after_its_lease(
    setup: Setup, counter: Proc, criu_path: str, phase: str
) -> None:
    """Another host cannot see the creator: while the lease runs, gc (even with no grace)
    deletes none of its blobs and the name is refused saying who holds it; once the lease
    has expired, gc finishes (complete) or undoes (incomplete) it and converges, and the
    name can be created again."""
    pid = str(counter.pid)
    done = crash(setup, criu_path, pid, phase)
    committed_by_creator = phase == "after-commit"
    with other_host(setup, criu_path) as mgr:
        shown = [(i.target, i.name) for i in mgr.list()]
        assert shown == ([("app", "cp")] if committed_by_creator else [])
        assert verify_store(mgr.repository, read_data=True).ok
        pending = mgr.catalog.pending()
        assert [(i.target, i.name) for i in pending] == ([] if committed_by_creator else
                                                         [("app", "cp")])
        blobs = {o for o in objects(setup) if o.startswith("blobs/") and ".tmp" not in o}
        report = collect_garbage(mgr.repository, grace_s=0)
        assert report.ok and not report.committed and not report.aborted
        assert report.blobs_deleted == 0 and blobs <= objects(setup)
        with pytest.raises(CheckpointExists) as refused:
            mgr.create("app", "cp", locator=pid, leave_running=True)
        if not committed_by_creator:
            (row,) = pending
            since = row.created_at.isoformat(timespec="seconds")
            assert str(refused.value) == (
                "checkpoint with name cp already exists for container app "
                f"(being created by host host-a, PID {row.owner_pid}, since {since})"
            )

    assert setup.expire_leases() == (0 if committed_by_creator else 1)
    with other_host(setup, criu_path) as mgr:
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
        if shown:
            mgr.remove("app", "cp")
        mgr.create("app", "cp", locator=pid, leave_running=True)
        assert [(i.target, i.name) for i in mgr.list()] == [("app", "cp")]
        final = verify_store(mgr.repository, read_data=True)
        assert final.ok, (final.problems, done.stderr)
    with setup.manager(criu=criu_path) as mgr:  # host-a's gc: the dead create's scratch
        assert collect_garbage(mgr.repository, grace_s=0).ok
    assert objects(setup) == setup.expected_objects()
    assert scratch_entries(setup) == []


@pytest.mark.criu
@pytest.mark.parametrize("setup", ["s3-postgresql"], indirect=True)
def test_a_shortened_lease_frees_the_name_for_another_host(
    setup: Setup, counter: Proc, criu_path: str
) -> None:
    """With ``CRYOSTASH_LEASE=2s`` a create killed mid-upload blocks its name on another
    host for about two seconds, not an hour: no clock is faked."""
    pid = str(counter.pid)
    env = {**setup.cli_env(criu_path), "CRYOSTASH_LEASE": "2s"}
    done = subprocess.run(
        [sys.executable, str(crashing.SCRIPT), "mid-upload", "create", "app", "cp", "--pid",
         pid, "--leave-running"],
        env=env, capture_output=True, text=True, timeout=180, check=False,
    )
    assert done.returncode == -signal.SIGKILL, done.stderr
    with setup.manager() as mgr:
        (row,) = mgr.catalog.pending()
    assert row.lease_expires_at is not None
    # A lease of seconds (a heartbeat may have renewed it once or twice on a loaded
    # machine), not the default hour.
    assert (row.lease_expires_at - row.created_at).total_seconds() <= 60
    with other_host(setup, criu_path) as mgr:
        created: list[str] = []

        def create_once() -> bool:
            try:
                created.append(mgr.create("app", "cp", locator=pid, leave_running=True).name)
            except CheckpointExists as exc:
                assert "(being created by host host-a, PID " in str(exc)
                return False
            return True

        wait_until(create_once, 30, "the lease to expire")
        assert created == ["cp"] and mgr.catalog.pending() == []
        assert verify_store(mgr.repository, read_data=True).ok


@pytest.mark.criu
@pytest.mark.parametrize("setup", SHAPES, indirect=True)
def test_a_live_create_keeps_its_name_and_survives_gc(
    setup: Setup, counter: Proc, criu_path: str, tmp_path: Path
) -> None:
    """A create held (alive) after its upload, with a lease of 2 s renewed by its
    heartbeat: the name is refused with the holder's host and PID, ``gc --grace 0`` from
    its own host and from another one (well past the lease) changes nothing of it, and the
    create then finishes and is listed; ``ls --all`` shows the reservation meanwhile."""
    pid = str(counter.pid)
    gate = tmp_path / "gate"
    env = {**setup.cli_env(criu_path), "CRYOSTASH_LEASE": "2s"}
    held = subprocess.Popen(
        [sys.executable, str(crashing.SCRIPT), f"hold:after-upload:{gate}", "create", "app",
         "cp", "--pid", pid, "--leave-running"],
        env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    try:
        reached = Path(f"{gate}.reached")
        wait_until(reached.exists, 120, "the create to reach after-upload")
        creator = int(reached.read_text())
        listed = cryostash(setup, criu_path, "ls", "--all")
        assert listed.returncode == 0, listed.stderr
        assert "pending" in listed.stdout and f"host-a (PID {creator})" in listed.stdout
        with setup.manager(criu=criu_path) as mgr:
            held_by = rf"\(being created by host host-a, PID {creator}, since "
            with pytest.raises(CheckpointExists, match=held_by):
                mgr.create("app", "cp", locator=pid, leave_running=True)
            report = collect_garbage(mgr.repository, grace_s=0)
            assert report.ok and not report.aborted and not report.committed
            assert report.scratch_deleted == () and report.strays_deleted == ()
        with other_host(setup, criu_path) as mgr:
            (row,) = mgr.catalog.pending()
            first_expiry = row.lease_expires_at
            assert first_expiry is not None

            def renewed() -> bool:
                (now,) = mgr.catalog.pending()
                return now.lease_expires_at is not None and now.lease_expires_at > first_expiry

            wait_until(renewed, 10, "the heartbeat to renew the lease")
            report = collect_garbage(mgr.repository, grace_s=0)
            assert report.ok and not report.aborted and not report.committed
        Path(f"{gate}.go").touch()
        _, err = held.communicate(timeout=120)
    finally:
        if held.poll() is None:
            held.kill()
            held.wait(timeout=10)
    assert held.returncode == 0, err
    with setup.manager(criu=criu_path) as mgr:
        assert [(i.target, i.name) for i in mgr.list()] == [("app", "cp")]
        assert verify_store(mgr.repository, read_data=True).ok


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
