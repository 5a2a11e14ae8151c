"""Issue 25, "the first hour", rows 7, 8 and 11: what a new user trips over, each row
through the real ``cryostash`` command (real CRIU, real runc).

- Row 7: two creates of one name at once; the loser reads Docker's words first, then who
  holds the name.
- Row 8: a read-only-root runc container whose image has no /tmp: the restore's error is
  CRIU's first error, explained (/tmp, the read-only root, what to do), and doing what it
  says makes the restore work.
- Row 11: a PID that is not a process is a usage error (exit 2) before any work, in words
  that fit a process (create, migrate); an engine that cannot read a checkpoint is
  refused before any download.

(Row 15, the LICENSE and the sdist: tests/test_wheel.py.)
"""

from __future__ import annotations

import json
import shutil
import sqlite3
import subprocess
import sys
from collections.abc import Iterator
from contextlib import closing
from pathlib import Path
from typing import Any

import pytest

from cryostash import Settings
from cryostash.engines.base import Engine
from cryostash.engines.criu import failure_message
from tests.support import cli, crashing
from tests.support.cli import Host, scratch_entries, stored_files
from tests.support.container_rigs import RuncContainers
from tests.support.containers import (
    assert_goes_on,
    build_rootfs,
    require_root_and,
    unique,
    wait_count,
)
from tests.support.fake_engine import FakeEngine, FakeManager, FakeRepository, make_image
from tests.support.processes import Proc, ProcessTracker, pid_exists, wait_until
from tests.support.setups import make_setup

HOST = "host-a"


def env_for(home: Path, criu: str) -> dict[str, str]:
    """A host's environment: a local store and SQLite catalog under ``home``."""
    return cli.base_env(
        CRYOSTASH_STORE=str(home / "store"),
        CRYOSTASH_CATALOG=f"sqlite:///{home / 'catalog.db'}",
        CRYOSTASH_SCRATCH=str(home / "scratch"),
        CRYOSTASH_HOST=HOST,
        CRYOSTASH_CACHE="none",
        CRYOSTASH_CRIU=criu,
    )


def catalog_rows(home: Path) -> tuple[list[tuple[str, str, str]], list[str]]:
    """``(target, name, status)`` of every checkpoint row and the action of every event."""
    db = home / "catalog.db"
    if not db.exists():
        return [], []
    with closing(sqlite3.connect(db)) as conn:
        rows = conn.execute("SELECT target, name, status FROM checkpoints").fetchall()
        events = [a for (a,) in conn.execute("SELECT action FROM events")]
    return [tuple(r) for r in rows], events


def free_pid() -> int:
    """A PID no process can have: above the kernel's ``pid_max``."""
    return int(Path("/proc/sys/kernel/pid_max").read_text()) + 1


@pytest.fixture
def counter(procs: ProcessTracker, tmp_path: Path) -> Proc:
    return procs.counter(tmp_path / "proc")


# -- row 7 -----------------------------------------------------------------------------------


@pytest.mark.criu
def test_row_7_the_loser_of_two_creates_of_one_name_reads_dockers_words_first(
    criu_path: str, counter: Proc, tmp_path: Path
) -> None:
    """Two real creators of ``race``/``same``: the first holds the name (paused once it
    has dumped, alive), the second is refused, exit 4, with Docker's sentence and then
    who holds it; once the first has committed, the refusal is Docker's sentence alone."""
    home = tmp_path / "home"
    env = env_for(home, criu_path)
    args = ["create", "race", "same", "--pid", str(counter.pid), "--leave-running"]
    gate = tmp_path / "gate"
    first = subprocess.Popen(
        [sys.executable, str(crashing.SCRIPT), f"hold:after-dump:{gate}", *args],
        env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    try:
        reached = Path(f"{gate}.reached")
        wait_until(lambda: reached.exists() or first.poll() is not None, 120, "the first create")
        assert reached.exists(), first.communicate()
        creator = int(reached.read_text())

        second = cli.run(args, env, check=False)

        assert second.returncode == 4, second.stderr
        (line,) = second.stderr.splitlines()
        docker = "Error: checkpoint with name same already exists for container race"
        assert line.startswith(f"{docker} (being created by host {HOST}, PID {creator}, since ")
        assert line.endswith(")")
        Path(f"{gate}.go").touch()
        out, err = first.communicate(timeout=cli.TIMEOUT_S)
        assert first.returncode == 0, err
        assert out.strip() == "same"
    finally:
        if first.poll() is None:
            first.kill()
            first.wait()
    again = cli.run(args, env, check=False)
    assert again.returncode == 4
    assert again.stderr.strip() == docker
    assert catalog_rows(home)[0] == [("race", "same", "committed")]
    assert pid_exists(counter.pid)  # --leave-running; the losers never dumped it


# -- row 8 -----------------------------------------------------------------------------------


def test_row_8_the_first_error_of_a_restored_task_is_the_cause(tmp_path: Path) -> None:
    """The lines of a restored task carry its PID (``(00.34)      1: Error (...)``): that
    error is the cause, chosen over the ones after it, and explained."""
    log = tmp_path / "restore.log"
    log.write_text(  # the end of the restore.log of the runc test below (CRIU 4.2)
        "(00.158477) Error (criu/util.c:1534): rlimit: Can't setup RLIMIT_NOFILE for self: "
        "Operation not permitted\n"
        "(00.343308)      1: mnt: Move the root to /tmp/.criu.mntns.AgB79o/13-0000000000\n"
        "(00.343332)      1: Error (criu/mount.c:2955): mnt: Can't create a temporary "
        "directory: Read-only file system\n"
        "(00.354327) Error (criu/cr-restore.c:2331): Restoring FAILED.\n"
        "(00.362319) Error (criu/cgroup.c:2055): cg: cgroupd: recv req error: No such file "
        "or directory\n"
    )
    head, hint, *rest = failure_message("restore", 1, log, "").splitlines()
    assert head == (
        "criu restore failed (exit 1): mnt: Can't create a temporary directory: "
        "Read-only file system"
    )
    assert hint.startswith("That is: the container's root file system is read-only and has "
                           "no /tmp folder: CRIU restores a container by pivoting into its root")
    assert rest[0] == "--- last lines of criu restore.log ---"
    assert rest[-1].endswith("cg: cgroupd: recv req error: No such file or directory")


@pytest.fixture(scope="module")
def rootfs_without_tmp(tmp_path_factory: pytest.TempPathFactory) -> Path:
    require_root_and("runc", "iptables-restore")
    rootfs = build_rootfs(tmp_path_factory.mktemp("no-tmp-rootfs") / "rootfs")
    (rootfs / "tmp").rmdir()
    return rootfs


@pytest.fixture
def runc_no_tmp(
    rootfs_without_tmp: Path, tmp_path: Path, criu_path: str
) -> Iterator[RuncContainers]:
    ctrs = RuncContainers(rootfs_without_tmp, tmp_path / "ctrs")
    try:
        yield ctrs
    finally:
        ctrs.delete_all()


@pytest.mark.criu
def test_row_8_a_read_only_root_without_tmp_explains_the_first_criu_error(
    runc_no_tmp: RuncContainers, tmp_path: Path, criu_path: str
) -> None:
    """The restore fails (CRIU cannot pivot into a read-only root with no /tmp): the error
    is CRIU's first error, not its last ("cg: cgroupd: recv req error"), then what it
    means and what to do; the log tail follows; nothing is left in scratch. Doing what it
    says (an empty /tmp in the bundle's root) makes the same restore work."""
    host = Host(tmp_path / "cs", "host-a", {"CRYOSTASH_CRIU": criu_path, "CRYOSTASH_CACHE": "none"})
    cid = unique("cs-runc-ro-notmp")
    bundle, data = runc_no_tmp.bundle("ro", readonly=True)
    assert not (bundle / "rootfs" / "tmp").exists()
    runc_no_tmp.start(cid, bundle)
    floor = wait_count(data / "counter", 3)
    host.cli("create", cid, "cp1", "--engine", "runc")
    assert runc_no_tmp.status(cid) is None

    failed = host.cli("restore", cid, "cp1", "--bundle", str(bundle), check=False)

    assert failed.returncode == 5, failed.stderr
    lines = failed.stderr.splitlines()
    assert lines[0] == (
        "Error: runc restore failed (exit 1): "
        "mnt: Can't create a temporary directory: Read-only file system"
    ), failed.stderr
    assert lines[1].startswith("That is: the container's root file system is read-only and "
                               "has no /tmp folder"), failed.stderr
    assert "mkdir BUNDLE/rootfs/tmp" in lines[1] and '"readonly": false' in lines[1]
    assert "--- last lines of criu restore.log ---" in lines[2]
    assert any("cg: cgroupd: recv req error" in line for line in lines[3:])  # the tail
    assert runc_no_tmp.status(cid) is None
    assert host.scratch_entries() == []

    (bundle / "rootfs" / "tmp").mkdir()  # what the error says to do
    restored = host.json("restore", cid, "cp1", "--bundle", str(bundle))
    assert isinstance(restored, dict) and restored["container"] == cid
    assert runc_no_tmp.status(cid) == "running"
    assert_goes_on(data / "counter", floor)
    assert host.scratch_entries() == []


# -- row 11 ----------------------------------------------------------------------------------


@pytest.mark.criu
def test_row_11_a_pid_that_is_no_process_is_a_usage_error_before_any_work(
    criu_path: str, tmp_path: Path
) -> None:
    """``create --pid abc`` / a PID no process has, ``migrate`` with one: exit 2, in a
    process's words ("no process with PID N"), and nothing reserved, stored or
    recorded (no catalog row or event, no scratch folder, no stored object)."""
    home = tmp_path / "home"
    env = env_for(home, criu_path)
    missing = free_pid()
    cases = [
        (["create", "app", "cp", "--pid", "abc"],
         "Error: invalid PID 'abc': expected a process ID (an integer > 1)"),
        (["create", "app", "cp", "--pid", str(missing)],
         f"Error: no process with PID {missing}"),
        (["migrate", "app", "--pid", str(missing)],
         f"Error: no process with PID {missing}"),
    ]
    for args, expected in cases:
        done = cli.run(args, env, check=False)
        assert (done.returncode, done.stderr.strip()) == (2, expected), (args, done.stderr)
        assert done.stdout == ""
    assert catalog_rows(home) == ([], [])
    assert scratch_entries(home) == []
    assert stored_files(home) == []


@pytest.mark.criu
def test_row_11_restore_with_an_engine_that_cannot_read_the_checkpoint_is_refused_first(
    criu_path: str, counter: Proc, tmp_path: Path
) -> None:
    """A criu checkpoint restored with ``--engine podman`` (or runc, docker): exit 2,
    saying which engine made it and which restores it, before any download: with every
    chunk of the store gone the answer is the same (no integrity error, no scratch path)."""
    home = tmp_path / "home"
    env = env_for(home, criu_path)
    cli.run(["create", "app", "cp", "--pid", str(counter.pid), "--leave-running"], env)
    shutil.rmtree(home / "store" / "blobs")  # a download would fail loudly
    for engine in ("podman", "runc", "docker"):
        done = cli.run(["restore", "app", "cp", "--engine", engine], env, check=False)
        assert done.returncode == 2, done.stderr
        assert done.stderr.strip() == (
            f"Error: checkpoint app/cp was made by the criu engine: --engine {engine} cannot "
            "restore it (each of the engines criu, docker, podman, runc restores only the "
            "checkpoints it made); restore it with --engine criu, or without --engine"
        )
    assert scratch_entries(home) == []
    assert [a for a in catalog_rows(home)[1] if a == "restore"] == []
    as_json = json.loads(cli.run(["ls", "--json"], env).stdout)
    assert [(c["target"], c["name"]) for c in as_json] == [("app", "cp")]


class RuncNamedRepository(FakeRepository):
    """Stores what the fake engine dumps, recorded as made by the runc engine."""

    def engine(self, name: str) -> Engine:
        engine = FakeEngine()
        engine.name = "runc"
        return engine


class RuncNamedManager(FakeManager):
    def __init__(self, settings: Settings, **options: Any) -> None:
        self.repository = RuncNamedRepository(settings, **options)


def test_row_11_criu_is_refused_for_another_engines_checkpoint_lazily_too(
    tmp_path: Path,
) -> None:
    """A runc checkpoint restored with ``--engine criu``, eagerly or ``--lazy``: exit 2,
    nothing downloaded (its chunks are gone), no helper started, no restore recorded; a
    third-party engine (``fake``) is left to decide for itself."""
    setup = make_setup("local-sqlite", tmp_path / "cs")
    make_image(tmp_path / "image")
    with setup.manager(RuncNamedManager) as mgr:
        assert mgr.create("ctr", "cp", locator=str(tmp_path / "image")).engine == "runc"
    shutil.rmtree(Path(setup.store_url) / "blobs")
    env = setup.cli_env()
    for lazy in ([], ["--lazy"]):
        done = cli.run(["restore", "ctr", "cp", "--engine", "criu", *lazy], env, check=False)
        assert done.returncode == 2, done.stderr
        assert done.stderr.startswith(
            "Error: checkpoint ctr/cp was made by the runc engine: --engine criu cannot "
            "restore it ("
        ), done.stderr
    third_party = cli.run(["restore", "ctr", "cp", "--engine", "fake"], env, check=False)
    assert "was made by" not in third_party.stderr  # the registry's answer, not ours
    assert scratch_entries(setup.scratch.parent) == []
