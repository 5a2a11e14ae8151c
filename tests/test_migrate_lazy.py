"""``cryostash migrate --lazy``: the destination restores lazily (real CRIU with
userfaultfd, ``criu lazy-pages``, cryostash's FUSE view), so the page download and the
memory part of CRIU's restore leave the downtime.

- A counter holding 64 MiB of random memory moves to host B through ``--to`` (the session's
  S3 store on moto and PostgreSQL catalog, as ``tests/test_migrate.py``), and to this host
  in-process (the library, SQLite): the report says ``lazy``, its downtime is the sum of
  its parts, the counter goes on at the destination, the lazy ``restore`` event arrives,
  and nothing is left behind (helper, FUSE mount, scratch). In-process, the source's
  manager keeps working after the lazy restore forked its helper.
- Refusals before the process is stopped: an engine that cannot restore lazily, a host
  without userfaultfd (this host: before anything is dumped; host B: its receiver fails
  before it says it is ready).
- A lazy restore failing at B before the process runs: rolled back at the source.

The migrated process is a child of this test reaped at once (see ``tests/support/migration.py``).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from cryostash import CheckpointManager
from cryostash.cli.cmd_migrate import format_report
from cryostash.operations.destination_local import LocalDestination
from cryostash.operations.migrate import MigrateRequest, migrate
from tests.support import cli
from tests.support.migration import (
    Hosts,
    T,
    counts_on,
    downtime_parts,
    local_hosts,
    running,
    s3_pg_hosts,
    start_counter,
    this_host_settings,
)
from tests.support.postgres import PostgresServer
from tests.support.processes import (
    ProcessTracker,
    is_dead,
    read_counter,
    wait_until,
)
from tests.support.stores import MotoServer

pytestmark = pytest.mark.criu

BALLAST_MIB = 64
MiB = 1 << 20


@pytest.fixture
def hosts(
    moto_server: MotoServer, pg_server: PostgresServer, tmp_path: Path, lazy_criu: str
) -> Hosts:
    """:func:`~tests.support.migration.s3_pg_hosts` with a CRIU that restores lazily."""
    return s3_pg_hosts(moto_server, pg_server, tmp_path, lazy_criu)


@pytest.fixture(name="local_hosts")
def local_hosts_fixture(tmp_path: Path, lazy_criu: str) -> Hosts:
    """Host A and B on a local store and a SQLite catalog (for the cases that fail)."""
    return local_hosts(tmp_path, lazy_criu)


def fake_criu(tmp_path: Path, real: str, refuse: str) -> str:
    """A CRIU that runs ``real`` except where ``refuse`` says: ``uffd`` (``criu check
    --feature uffd-noncoop`` fails: no userfaultfd) or ``lazy-restore`` (``criu restore
    --lazy-pages`` fails)."""
    tests = {
        "uffd": '[ "$1" = check ] && [ "$3" = uffd-noncoop ]',
        "lazy-restore": '[ "$1" = restore ] && [ "$2" = --lazy-pages ]',
    }
    script = tmp_path / f"criu-no-{refuse}"
    script.write_text(
        "#!/bin/sh\n"
        f"if {tests[refuse]}; then echo 'refused by the test ({refuse})' >&2; exit 1; fi\n"
        f'exec {real} "$@"\n'
    )
    script.chmod(0o755)
    return str(script)


def fuse_mounts(under: Path) -> list[str]:
    return [m for m in Path("/proc/mounts").read_text().splitlines() if str(under) in m]


def events(hosts: Hosts) -> list[dict[str, Any]]:
    found = json.loads(hosts.cryostash("events", T, "--json").stdout)
    assert isinstance(found, list)
    return found


def lazy_done(found: list[dict[str, Any]], host: str) -> list[dict[str, Any]]:
    """The lazy restores that completed at ``host``."""
    return [e for e in found if e["action"] == "restore" and e["host"] == host
            and e["detail"].get("lazy") is True]


def nothing_left(scratch: Path, under: Path, helper_pid: int | None) -> None:
    """No helper process, no FUSE mount under ``under``, an empty scratch folder."""
    if helper_pid is not None:
        wait_until(lambda: is_dead(helper_pid), 60, "the lazy-restore helper to exit")
    wait_until(lambda: not fuse_mounts(under), 30, "the FUSE view to be unmounted")
    wait_until(lambda: not scratch.exists() or not list(scratch.iterdir()), 30,
               f"{scratch} to be empty")


def check_lazy_report(report: dict[str, Any]) -> None:
    """A lazy report: lazy, the parts sum to the downtime, only the eager files were
    downloaded in it, the helper named."""
    final = report["final"]
    assert report["lazy"] is True and final["lazy"] is True
    assert report["downtime_s"] == pytest.approx(downtime_parts(final), abs=1e-4)
    assert 0 < report["downtime_s"] < 60
    assert all(final[k] >= 0 for k in ("handoff_s", "download_s", "pid_wait_s", "restore_s"))
    assert final["bytes_downloaded"] is None and final["bytes_from_cache"] is None
    # The eager files are CRIU's metadata: the memory pages are not in the downtime.
    assert 0 < final["eager_bytes"] < BALLAST_MIB * MiB / 20
    assert isinstance(final["helper_pid"], int)


@pytest.mark.slow
def test_lazy_migration_to_a_command_destination(hosts: Hosts, procs: ProcessTracker) -> None:
    pid, counter = start_counter(procs, hosts.workdir / "c", ballast_mib=BALLAST_MIB)
    before = read_counter(counter)

    report = hosts.migrate(pid, "--name", "move", "--lazy")

    new_pid = procs.track(int(report["pid"]))
    assert new_pid == pid and running(new_pid)
    check_lazy_report(report)
    assert report["first_bytes_uploaded"] > BALLAST_MIB * MiB * 0.9
    counts_on(counter, before)  # it runs at B, its memory arriving or arrived
    done = wait_until(lambda: lazy_done(events(hosts), "host-b"), 180,
                      "the lazy restore to complete at host B")
    detail = done[0]["detail"]
    assert detail["pid"] == new_pid and detail["pages_total"] > BALLAST_MIB * MiB // 4096
    assert detail["time_to_complete_s"] >= detail["time_to_running_s"]
    assert done[0]["name"] == "move"
    counts_on(counter, before)
    nothing_left(hosts.workdir / "b" / "scratch", hosts.workdir, report["final"]["helper_pid"])
    assert hosts.names() == ["move"]  # the pre-copy removed, the final one kept


@pytest.mark.slow
def test_lazy_migration_to_this_host_keeps_the_source_manager_working(
    procs: ProcessTracker, tmp_path: Path, lazy_criu: str
) -> None:
    settings = this_host_settings(tmp_path, lazy_criu)
    pid, counter = start_counter(procs, tmp_path / "c", ballast_mib=BALLAST_MIB)
    before = read_counter(counter)
    with CheckpointManager(settings) as mgr:
        request = MigrateRequest(T, "here", str(pid), precopy=2, lazy=True)
        report = migrate(mgr.repository, request, destination=LocalDestination(mgr.repository))
        procs.track(report.final.pid)
        # restore_lazy closed this manager's catalog before it forked the helper; the
        # migration went on with it (pre-copies removed) and so can its caller.
        assert report.removed == ("here-pre1", "here-pre2") and not report.warnings
        assert [c.name for c in mgr.list(T)] == ["here"]
        check_lazy_report(report.as_dict())
        counts_on(counter, before)
        done = wait_until(
            lambda: [e for e in mgr.repository.catalog.events(T)
                     if e.action == "restore" and e.detail.get("lazy")],
            180, "the lazy restore to complete",
        )
        assert done[0].detail["pid"] == report.final.pid
        nothing_left(tmp_path / "scratch", tmp_path, report.final.helper_pid)
        # The same manager checkpoints the moved process and removes it again.
        again = mgr.create(T, "after", locator=str(report.final.pid), leave_running=True)
        assert again.name == "after" and running(report.final.pid)
        mgr.remove(T, "after")
        assert [c.name for c in mgr.list(T)] == ["here"]
    counts_on(counter, before)
    text = "\n".join(format_report(report))
    assert "download (eager files)" in text and "restore (lazy)" in text
    assert f"`cryostash events {T}` shows `restore` (lazy)" in text


def test_an_engine_or_host_that_cannot_restore_lazily_is_refused_before_the_dump(
    local_hosts: Hosts, procs: ProcessTracker, lazy_criu: str
) -> None:
    hosts = local_hosts
    for to in ((), ("--to", hosts.to())):  # this host, and a command destination
        done = hosts.cryostash("migrate", T, "--engine", "runc", "--lazy", *to, check=False)
        assert done.returncode == 2, done.stderr
        assert "lazy restore is not supported by runc" in done.stderr

    pid, counter = start_counter(procs, hosts.workdir / "c", ballast_mib=8)
    # This host without userfaultfd: refused before anything is dumped.
    no_uffd = fake_criu(hosts.workdir, lazy_criu, "uffd")
    done = cli.run(["migrate", T, "--pid", str(pid), "--lazy"],
                   {**hosts.env, "CRYOSTASH_CRIU": no_uffd}, check=False)
    assert done.returncode == 5, done.stderr
    assert "lazy restore needs userfaultfd" in done.stderr
    assert f"The process still runs at the source (PID {pid}); nothing was dumped" in done.stderr
    # Host B without userfaultfd: its receiver fails before it is ready (no pre-copy:
    # nothing is dumped at all).
    done = hosts.cryostash("migrate", T, "--pid", str(pid), "--lazy", "--precopy", "0",
                           "--to", hosts.to(CRYOSTASH_CRIU=no_uffd), check=False)
    assert done.returncode == 5, done.stderr
    assert "stopped at getting the destination" in done.stderr
    assert "lazy restore needs userfaultfd" in done.stderr
    assert f"The process still runs at the source (PID {pid})" in done.stderr
    assert running(pid)
    counts_on(counter, 5)
    if Path(hosts.env["CRYOSTASH_STORE"]).exists():
        assert events(hosts) == [] and hosts.names() == []
    # else nothing was ever written: no store was created


def test_a_lazy_restore_failing_before_the_process_runs_is_rolled_back(
    local_hosts: Hosts, procs: ProcessTracker, lazy_criu: str
) -> None:
    hosts = local_hosts
    pid, counter = start_counter(procs, hosts.workdir / "c", ballast_mib=8)
    before = read_counter(counter)
    broken = fake_criu(hosts.workdir, lazy_criu, "lazy-restore")
    done = hosts.cryostash("migrate", T, "--pid", str(pid), "--lazy", "--name", "mv",
                           "--to", hosts.to(CRYOSTASH_CRIU=broken), check=False)
    assert done.returncode == 5, done.stderr
    assert "refused by the test (lazy-restore)" in done.stderr
    assert f"Rolled back: the process runs again at the source as PID {pid}" in done.stderr
    assert running(pid)
    counts_on(counter, before)
    assert hosts.names() == ["mv"]
    found = events(hosts)
    assert [(e["action"], e["host"]) for e in found if e["action"].startswith("restore")] == [
        ("restore", "host-a")
    ]
    nothing_left(hosts.workdir / "b" / "scratch", hosts.workdir, None)
