"""``cryostash migrate``: pre-copy live migration between two "hosts" on this machine.

Host A runs ``cryostash migrate``; host B, reached through ``--to``, has its own name,
scratch folder and chunk cache, the same S3 store (the session's moto server) and the
same PostgreSQL catalog (the session's cluster) (``tests/support/migration.py``). Real
CRIU; the migrated process is a child of the test, reaped at once.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from cryostash import CheckpointManager
from cryostash.cli.cmd_migrate import format_report
from cryostash.errors import UsageError
from cryostash.operations.destination import CommandDestination
from cryostash.operations.destination_local import LocalDestination
from cryostash.operations.migrate import MigrateRequest, migrate
from tests.support import cli
from tests.support.migration import (
    Hosts,
    T,
    counts_on,
    downtime_parts,
    running,
    s3_pg_hosts,
    start_child,
    start_counter,
    this_host_settings,
)
from tests.support.postgres import PostgresServer
from tests.support.processes import (
    ProcessTracker,
    read_counter,
    wait_until,
)
from tests.support.stores import MotoServer

MEMORY_PROG = Path(__file__).resolve().parent / "support" / "memory_prog.py"
SIZE_MIB = 16


@pytest.fixture
def hosts(
    moto_server: MotoServer, pg_server: PostgresServer, tmp_path: Path, criu_path: str
) -> Hosts:
    """:func:`s3_pg_hosts` with the CRIU of the tests."""
    return s3_pg_hosts(moto_server, pg_server, tmp_path, criu_path)


def status_is(status: Path, value: int) -> Callable[[], bool]:
    def check() -> bool:
        try:
            return status.read_text() == str(value)
        except FileNotFoundError:
            return False

    return check


def test_migrates_with_precopy_and_the_final_step_moves_only_what_changed(
    hosts: Hosts, procs: ProcessTracker
) -> None:
    status = hosts.workdir / "p" / "status"
    pid = start_child(
        procs, [sys.executable, str(MEMORY_PROG), str(SIZE_MIB), str(status)], hosts.workdir / "p"
    )
    wait_until(status_is(status, 0), 60, "the memory to be in place")
    os.kill(pid, signal.SIGUSR1)  # state to carry over: one rewrite done
    wait_until(status_is(status, 1), 60, "the first rewrite")

    report = hosts.migrate(pid, "--name", "move")

    new_pid = procs.track(int(report["pid"]))
    assert running(new_pid)
    pre, final = report["precopy"], report["final"]
    assert [p["name"] for p in pre] == ["move-pre1"]
    first_up, first_down = report["first_bytes_uploaded"], report["first_bytes_downloaded"]
    assert first_up == pre[0]["bytes_uploaded"] > SIZE_MIB << 19  # the random half at least
    assert first_down == pre[0]["prefetch"]["bytes_downloaded"] >= 0.9 * first_up
    # The final step carries only what changed since the pre-copy, both ways.
    assert 0 < final["bytes_uploaded"] < first_up / 4, (pre, final)
    assert final["bytes_downloaded"] < first_down / 4, (pre, final)
    assert final["bytes_from_cache"] >= 0.9 * first_down  # the prefetched chunks
    # The downtime is the sum of its parts; nothing waited for the PID to be reaped.
    assert report["downtime_s"] == pytest.approx(downtime_parts(final), abs=1e-4)
    assert 0 < report["downtime_s"] < 30
    assert final["pid_wait_s"] < 0.5
    assert final["frozen_s"] is not None and final["frozen_s"] <= final["dump_s"]

    # Host B restored it, with its memory: the next rewrite is the second one.
    events = json.loads(hosts.cryostash("events", T, "--json").stdout)
    assert [(e["action"], e["host"]) for e in events if e["action"] == "restore"] == [
        ("restore", "host-b")
    ]
    assert ("prefetch", "host-b") in [(e["action"], e["host"]) for e in events]
    os.kill(new_pid, signal.SIGUSR1)
    wait_until(status_is(status, 2), 60, "the restored process to do its second rewrite")
    # The pre-copy checkpoint is gone; the final one is complete.
    assert report["removed"] == ["move-pre1"] and hosts.names() == ["move"]
    verified = json.loads(hosts.cryostash("verify", T, "move", "--json").stdout)
    assert verified["ok"] is True, verified


def test_without_prefetch_the_destination_downloads_the_whole_image(
    hosts: Hosts, procs: ProcessTracker
) -> None:
    pid, counter = start_counter(procs, hosts.workdir / "c")
    before = read_counter(counter)
    report = hosts.migrate(pid, "--no-prefetch")
    procs.track(int(report["pid"]))
    counts_on(counter, before)
    final = report["final"]
    assert report["precopy"][0]["prefetch"] is None
    assert report["first_bytes_downloaded"] is None
    assert final["bytes_from_cache"] == 0
    assert final["bytes_downloaded"] >= 0.9 * report["first_bytes_uploaded"]
    name = report["name"]
    assert name.startswith("migrate-") and len(name) == len("migrate-20260101T000000")
    assert hosts.names() == [name]  # the pre-copy was removed


def test_a_destination_that_fails_leaves_the_process_at_the_source(
    hosts: Hosts, procs: ProcessTracker
) -> None:
    pid, counter = start_counter(procs, hosts.workdir / "c")
    # The prefetch of the pre-copy fails: stopped before the process was ever stopped.
    failed = hosts.cryostash("migrate", T, "--pid", str(pid), "--to", "false", check=False)
    assert failed.returncode == 1, failed.stderr
    assert "stopped at the prefetch of" in failed.stderr
    assert f"The process still runs at the source (PID {pid})" in failed.stderr
    assert running(pid) and hosts.names() == []
    counts_on(counter, 0)

    # The restore at the destination fails (its CRIU does not run): rolled back here.
    before = read_counter(counter)
    failed = hosts.cryostash(
        "migrate", T, "--pid", str(pid), "--to", hosts.to(CRYOSTASH_CRIU="/bin/false"),
        "--no-prefetch", "--name", "mv", check=False,
    )
    assert failed.returncode == 5, failed.stderr  # the destination's error: CRIU's
    assert "the restore at the destination (env CRYOSTASH_HOST=host-b" in failed.stderr
    assert "CRIU at /bin/false does not run" in failed.stderr
    assert f"Rolled back: the process runs again at the source as PID {pid}" in failed.stderr
    assert running(pid)
    counts_on(counter, before)
    assert hosts.names() == ["mv"]  # the final checkpoint is kept; the pre-copy is not
    events = json.loads(hosts.cryostash("events", T, "--json").stdout)
    assert [(e["action"], e["host"]) for e in events if e["action"] == "restore"] == [
        ("restore", "host-a")
    ]


def test_bad_names_and_destinations_are_refused_before_anything_is_dumped(
    procs: ProcessTracker, tmp_path: Path, criu_path: str
) -> None:
    env = cli.host_env(tmp_path, criu=criu_path)
    pid, _counter = start_counter(procs, tmp_path / "c")
    cli.run(["create", T, "mv-pre2", "--pid", str(pid), "--leave-running"], env)

    def refused(*flags: str) -> subprocess.CompletedProcess[str]:
        return cli.run(["migrate", T, "--pid", str(pid), *flags], env, check=False)

    bad = refused("--name", "x")
    assert bad.returncode == 2 and "Invalid checkpoint ID (x)" in bad.stderr
    taken = refused("--name", "mv", "--precopy", "2")
    assert taken.returncode == 4
    assert "checkpoint with name mv-pre2 already exists for container app" in taken.stderr
    with pytest.raises(UsageError, match="'no-such-program-here' not found"):
        CommandDestination.parse("no-such-program-here cryostash")
    # Nothing was dumped: only the one checkpoint made above, and the process runs on.
    events = json.loads(cli.run(["events", T, "--json"], env).stdout)
    assert [e["name"] for e in events] == ["mv-pre2"]
    assert running(pid)


def test_library_migration_to_this_host(
    procs: ProcessTracker, tmp_path: Path, criu_path: str
) -> None:
    settings = this_host_settings(tmp_path, criu_path)
    pid, counter = start_counter(procs, tmp_path / "c")
    with CheckpointManager(settings) as mgr:
        with pytest.raises(UsageError, match="--precopy -1: expected 0 or more"):
            request = MigrateRequest(T, "here", str(pid), precopy=-1)
            migrate(mgr.repository, request, destination=LocalDestination(mgr.repository))
        report = migrate(
            mgr.repository, MigrateRequest(T, "here", str(pid), precopy=2),
            destination=LocalDestination(mgr.repository),
        )
        assert [c.name for c in mgr.list(T)] == ["here"]
    procs.track(report.final.pid)
    counts_on(counter, 5)
    assert [s.name for s in report.precopy] == ["here-pre1", "here-pre2"]
    assert report.precopy[0].prefetch is not None
    assert report.precopy[0].prefetch["skipped"] == "local store"
    assert report.downtime_s == pytest.approx(downtime_parts(report.as_dict()["final"]), abs=1e-4)
    assert report.destination == "this host"
    text = "\n".join(format_report(report))
    assert f"migrated {T} to this host: PID {report.final.pid} runs there" in text
    assert "here-pre2" in text and "downtime: " in text
