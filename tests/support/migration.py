"""Two hosts on this machine for the ``cryostash migrate`` tests (``test_migrate.py``,
``test_migrate_lazy.py``), and the counter they migrate.

Host A runs ``cryostash migrate`` (a CLI child process); host B is reached through
``--to "env CRYOSTASH_HOST=host-b CRYOSTASH_SCRATCH=... CRYOSTASH_CACHE=... python -m
cryostash"``. Source and destination being one machine, CRIU restores the PID it dumped,
which must be free: the migrated process is a child of the test with a thread waiting for
it (:func:`start_child`), so it is reaped the moment CRIU ends it (PID 1 reaps orphans
only every ~2 s here), and the downtime figures are those of the migration.
"""

from __future__ import annotations

import json
import shlex
import subprocess
import sys
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cryostash import Settings
from tests.support import cli
from tests.support.postgres import PostgresServer
from tests.support.processes import (
    COUNTER_PROG,
    ProcessTracker,
    is_dead,
    pid_exists,
    read_counter,
    wait_until,
)
from tests.support.stores import MotoServer

#: The target every migration test migrates.
T = "app"


@dataclass
class Hosts:
    """Host A's environment (it runs migrate) and what host B needs in ``--to``."""

    env: dict[str, str]
    workdir: Path

    def to(self, **extra: str) -> str:
        """The ``--to`` command running cryostash as host B (``extra``: more variables)."""
        b = self.workdir / "b"
        variables = {
            "CRYOSTASH_HOST": "host-b",
            "CRYOSTASH_SCRATCH": str(b / "scratch"),
            "CRYOSTASH_CACHE": str(b / "cache"),
            **extra,
        }
        return shlex.join(
            ["env", *(f"{k}={v}" for k, v in variables.items()), sys.executable, "-m",
             "cryostash"]
        )

    def cryostash(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        """``cryostash ARGS`` on host A."""
        return cli.run(list(args), self.env, check=check)

    def migrate(self, pid: int, *flags: str) -> dict[str, Any]:
        """``migrate T --pid PID --to B --json FLAGS`` on host A, which must succeed."""
        done = self.cryostash("migrate", T, "--pid", str(pid), "--to", self.to(), "--json",
                              *flags)
        report = json.loads(done.stdout)
        assert isinstance(report, dict)
        return report

    def names(self) -> list[str]:
        return [c["name"] for c in json.loads(self.cryostash("ls", T, "--json").stdout)]


def s3_pg_hosts(
    moto_server: MotoServer, pg_server: PostgresServer, tmp_path: Path, criu: str
) -> Hosts:
    """One bucket, one fresh database; host A works in ``a/``, host B in ``b/``."""
    env = cli.host_env(
        tmp_path / "a", criu=criu, store=False, chunk_size="256k",
        CRYOSTASH_STORE=f"s3://{moto_server.make_bucket()}/cs",
        CRYOSTASH_CATALOG=pg_server.create_database(), **moto_server.env(),
    )
    return Hosts(env, tmp_path)


def local_hosts(tmp_path: Path, criu: str) -> Hosts:
    """Host A and B on a local store and a SQLite catalog in ``tmp_path``."""
    env = cli.host_env(
        tmp_path, criu=criu, CRYOSTASH_SCRATCH=str(tmp_path / "a" / "scratch"),
        CRYOSTASH_CACHE=str(tmp_path / "a" / "cache"),
    )
    return Hosts(env, tmp_path)


def this_host_settings(tmp_path: Path, criu: str) -> Settings:
    """Settings of an in-process manager on host ``here`` (local store, SQLite catalog in
    ``tmp_path``), for migrations to this host through the library."""
    return Settings(
        store_url=str(tmp_path / "store"),
        catalog_url=f"sqlite:///{tmp_path / 'catalog.db'}",
        scratch_dir=tmp_path / "scratch",
        host="here",
        criu_path=criu,
    )


def start_child(procs: ProcessTracker, argv: list[str], workdir: Path) -> int:
    """Start ``argv`` as a child of this test leading its own session (no --shell-job),
    with a thread that reaps it as soon as it ends; tracked, so it is killed at the end."""
    workdir.mkdir(parents=True, exist_ok=True)
    with open(workdir / "stderr", "wb") as err:
        child = subprocess.Popen(
            argv, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=err,
            start_new_session=True, cwd=workdir,
        )
    threading.Thread(target=child.wait, daemon=True).start()
    return procs.track(child.pid)


def start_counter(procs: ProcessTracker, workdir: Path, ballast_mib: int = 0) -> tuple[int, Path]:
    """A counter (every 20 ms; holding ``ballast_mib`` MiB of random memory) started by
    :func:`start_child`, once it counted to 5: (its PID, its counter file)."""
    counter = workdir / "counter"
    argv = [sys.executable, str(COUNTER_PROG), str(counter), "0.02"]
    pid = start_child(procs, [*argv, "--ballast-mib", str(ballast_mib)], workdir)
    wait_until(lambda: read_counter(counter, 60) >= 5, 60, "the counter to count")
    return pid, counter


def running(pid: int) -> bool:
    return pid_exists(pid) and not is_dead(pid)


def counts_on(counter: Path, since: int) -> None:
    """The counter goes on from at least ``since`` (a restart would begin again at 0)."""
    now = read_counter(counter)
    assert now >= since, f"the counter started again ({now} < {since})"
    wait_until(lambda: read_counter(counter) >= now + 10, 10, "the counter to go on")


def downtime_parts(final: dict[str, Any]) -> float:
    """The sum of the downtime's parts in a migrate report's ``final`` step."""
    keys = ("dump_s", "upload_s", "commit_s", "handoff_s", "download_s", "pid_wait_s",
            "restore_s")
    return sum(float(final[k]) for k in keys)
