"""Many hosts, one store and one catalog, through the real ``cryostash`` command.

Each host is a separate ``python -m cryostash`` process with its own ``--host`` name, its
own scratch folder and its own chunk cache; they share ONE S3 store (the session's moto server, with
authentication on) and ONE PostgreSQL catalog (the session's private cluster). The
concurrency tests also run on one local folder and one SQLite file (WAL and a busy
timeout: processes on one file must never see "database is locked").

Every process a test starts is tracked (``procs``) or waited for, and killed by PID.
"""

from __future__ import annotations

import contextlib
import json
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from cryostash.store import Manifest
from tests.support import cli
from tests.support.postgres import PostgresServer
from tests.support.processes import (
    ProcessTracker,
    pid_exists,
    read_counter,
    wait_pid_gone,
    wait_until,
)
from tests.support.stores import MotoServer, RawStore

N = 8


@dataclass
class Host:
    """One host: its name, environment and global flags."""

    name: str
    env: dict[str, str]
    flags: list[str] = field(default_factory=list)
    outputs: list[str] = field(default_factory=list)

    def __call__(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        done = cli.run([*self.flags, *args], self.env, check=check)
        self.outputs += [done.stdout, done.stderr]
        return done

    @property
    def scratch(self) -> Path:
        return Path(self.env["CRYOSTASH_SCRATCH"])


@dataclass
class Shared:
    """The store and the catalog every host uses."""

    kind: str
    store: str
    catalog: str
    raw: RawStore
    env: dict[str, str]
    workdir: Path
    moto: MotoServer | None = None

    def host(self, name: str, flags: list[str] | None = None, **extra: str) -> Host:
        env = cli.base_env(
            CRYOSTASH_STORE=self.store,
            CRYOSTASH_CATALOG=self.catalog,
            CRYOSTASH_SCRATCH=str(self.workdir / name / "scratch"),
            CRYOSTASH_CACHE=str(self.workdir / name / "cache"),  # each host its own
            CRYOSTASH_HOST=name,
            **{**self.env, **extra},
        )
        return Host(name, env, list(flags or []))

    @contextlib.contextmanager
    def authenticating(self) -> Iterator[None]:
        if self.moto is None:
            yield
        else:
            with self.moto.authenticating():
                yield

    def incomplete_uploads(self) -> list[Any]:
        if self.moto is None:
            return []
        bucket = self.raw.root.split("/")[0]
        listed = self.raw.filesystem.call_s3("list_multipart_uploads", Bucket=bucket)
        return list(listed.get("Uploads", []))


def _s3_postgresql(
    request: pytest.FixtureRequest, tmp_path: Path, criu_path: str
) -> Shared:
    moto: MotoServer = request.getfixturevalue("moto_server")
    pg: PostgresServer = request.getfixturevalue("pg_server")
    import s3fs

    bucket = moto.make_bucket()
    fs = s3fs.S3FileSystem(**moto.options(), skip_instance_cache=True)
    return Shared(
        kind="s3-postgresql",
        store=f"s3://{bucket}/cryostash",
        catalog=pg.create_database(),
        raw=RawStore(fs, f"{bucket}/cryostash"),
        env={**moto.env(), "CRYOSTASH_CRIU": criu_path},
        workdir=tmp_path,
        moto=moto,
    )


def _local_sqlite(tmp_path: Path, criu_path: str) -> Shared:
    from fsspec.implementations.local import LocalFileSystem

    root = tmp_path / "store"
    return Shared(
        kind="local-sqlite",
        store=str(root),
        catalog=f"sqlite:///{tmp_path / 'catalog.db'}",
        raw=RawStore(LocalFileSystem(), str(root)),
        env={"CRYOSTASH_CRIU": criu_path},
        workdir=tmp_path,
    )


@pytest.fixture
def s3_pg(request: pytest.FixtureRequest, tmp_path: Path, criu_path: str) -> Shared:
    """One bucket on the session's moto server and one fresh PostgreSQL database."""
    return _s3_postgresql(request, tmp_path, criu_path)


@pytest.fixture(params=["s3-postgresql", "local-sqlite"])
def shared(request: pytest.FixtureRequest, tmp_path: Path, criu_path: str) -> Shared:
    """Each shared setup in turn."""
    if request.param == "s3-postgresql":
        return _s3_postgresql(request, tmp_path, criu_path)
    return _local_sqlite(tmp_path, criu_path)


def scratch_left(*hosts: Host) -> list[str]:
    return [str(p) for h in hosts if h.scratch.exists() for p in h.scratch.iterdir()]


def stored_manifests(raw: RawStore) -> dict[str, Manifest]:
    """Every manifest in the store, by relative path, parsed."""
    found = {}
    for rel in raw.files():
        parts = rel.split("/")
        if parts[0] == "checkpoints" and len(parts) == 4 and parts[3] == "manifest.json":
            found[rel] = Manifest.from_bytes(raw.get(rel), target=parts[1], name=parts[2])
    return found


def assert_store_and_catalog_agree(shared: Shared, expected: set[tuple[str, str]]) -> None:
    """The store holds exactly the manifests of ``expected`` (target, name) and exactly
    their blobs; the catalog holds exactly those checkpoints, committed, and exactly
    those blob references. Nothing else: no orphan, no temporary file, no pending row,
    no incomplete multipart upload."""
    manifests = stored_manifests(shared.raw)
    assert {(m.target, m.name) for m in manifests.values()} == expected
    digests = {d for m in manifests.values() for f in m.files for d in f.blobs}
    expected_files = set(manifests) | {RawStore.blob(d) for d in digests}
    assert set(shared.raw.files()) == expected_files
    assert shared.incomplete_uploads() == []
    rows = cli.catalog_rows(shared.catalog)
    checkpoints = rows["checkpoints"]
    assert {(r["target"], r["name"]) for r in checkpoints} == expected
    assert {r["status"] for r in checkpoints} <= {"committed"}
    assert {r["digest"] for r in rows["blobs"]} == digests
    by_id = {r["id"]: (r["target"], r["name"]) for r in checkpoints}
    refs: dict[tuple[str, str], set[str]] = {}
    for r in rows["checkpoint_blobs"]:
        refs.setdefault(by_id[r["checkpoint_id"]], set()).add(r["digest"])
    for m in manifests.values():
        assert refs.get((m.target, m.name)) == {d for f in m.files for d in f.blobs}


# -- migration: checkpoint on host A, restore on host B ---------------------------------


def test_host_a_checkpoints_host_b_restores_and_the_counter_goes_on(
    s3_pg: Shared, procs: ProcessTracker, tmp_path: Path
) -> None:
    assert s3_pg.moto is not None
    admin = s3_pg.moto.admin
    # Host A is given its credentials as storage options (flags), host B by the standard
    # AWS variables: both must reach the one store.
    a = s3_pg.host(
        "host-a",
        flags=[
            *("--storage-option", f"key={admin.key}"),
            *("--storage-option", f"secret={admin.secret}"),
            *("--storage-option", f"endpoint_url={s3_pg.moto.endpoint}"),
        ],
    )
    for variable in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_ENDPOINT_URL"):
        del a.env[variable]
    b = s3_pg.host("host-b")
    proc = procs.counter(tmp_path / "proc")
    counter = proc.counter_path
    assert counter is not None
    wait_until(lambda: read_counter(counter) >= 10, 10, "the counter to reach 10")

    with s3_pg.authenticating():
        assert a("create", "counter", "migrate", "--pid", str(proc.pid)).stdout.strip() == "migrate"
        wait_pid_gone(proc.pid)
        stopped_at = read_counter(counter)

        assert b("ls", "counter").stdout.splitlines() == ["CHECKPOINT NAME", "migrate"]
        (listed,) = json.loads(b("ls", "--json").stdout)
        assert listed["host"] == "host-a" and listed["status"] == "committed"
        restored = json.loads(b("restore", "counter", "migrate", "--json").stdout)
        pid = procs.track(restored["pid"])
        assert pid_exists(pid)
        assert read_counter(counter) >= stopped_at, "the restored counter started again"
        wait_until(lambda: read_counter(counter) >= stopped_at + 10, 10, "the counter to go on")

        events = json.loads(a("events", "--json").stdout)
    assert [(e["action"], e["host"], e["name"]) for e in events] == [
        ("checkpoint", "host-a", "migrate"),
        ("restore", "host-b", "migrate"),
    ]
    assert scratch_left(a, b) == []
    assert_store_and_catalog_agree(s3_pg, {("counter", "migrate")})

    # Credentials are in no catalog row, no stored object, no output of either host.
    rows = json.dumps(cli.catalog_rows(s3_pg.catalog), default=str)
    objects = b"".join(s3_pg.raw.get(rel) for rel in s3_pg.raw.files())
    outputs = "".join(a.outputs + b.outputs)
    for secret in (admin.secret, admin.key):
        assert secret not in rows
        assert secret.encode() not in objects
        assert secret not in outputs


# -- races: N hosts at once ---------------------------------------------------------------


def _race(shared: Shared, tmp_path: Path, commands: list[tuple[Host, list[str]]]) -> list[
    tuple[str, int, str]
]:
    """Start every command at once (a barrier: all wait for one file); return
    ``(host, exit code, stderr)`` of each."""
    go = tmp_path / "go"
    running: list[tuple[Host, subprocess.Popen[str]]] = []
    try:
        with shared.authenticating():
            for i, (host, args) in enumerate(commands):
                ready = tmp_path / f"ready-{i}"
                running.append(
                    (host, cli.start_at_barrier([*host.flags, *args], host.env, ready, go))
                )
            wait_until(
                lambda: all((tmp_path / f"ready-{i}").exists() for i in range(len(commands))),
                120,
                "every command to be ready",
            )
            go.touch()
            results = []
            for host, popen in running:
                _, err = popen.communicate(timeout=cli.TIMEOUT_S)
                results.append((host.name, popen.returncode, err))
            return results
    finally:
        for _, popen in running:
            if popen.poll() is None:
                popen.kill()
                popen.wait()


def test_n_hosts_create_the_same_name_at_once_exactly_one_wins(
    shared: Shared, procs: ProcessTracker, tmp_path: Path
) -> None:
    proc = procs.counter(tmp_path / "proc")
    hosts = [shared.host(f"host-{i}") for i in range(N)]
    args = ["create", "shared-app", "race", "--pid", str(proc.pid), "--leave-running"]
    results = _race(shared, tmp_path, [(h, args) for h in hosts])

    codes = sorted(code for _, code, _ in results)
    assert codes == [0] + [4] * (N - 1), results
    winner = next(name for name, code, _ in results if code == 0)
    for _, code, err in results:
        if code == 4:  # Docker's words first (then who holds it while it is created)
            assert (
                "Error: checkpoint with name race already exists for container shared-app"
                in err
            ), err
    assert pid_exists(proc.pid)  # --leave-running, and the losers never dumped it

    assert_store_and_catalog_agree(shared, {("shared-app", "race")})
    rows = cli.catalog_rows(shared.catalog)
    assert [r["host"] for r in rows["checkpoints"]] == [winner]
    assert [(e["action"], e["host"]) for e in rows["events"]] == [("checkpoint", winner)]
    assert scratch_left(*hosts) == []


def test_n_hosts_create_different_names_at_once_all_succeed(
    shared: Shared, procs: ProcessTracker, tmp_path: Path
) -> None:
    # One process per host: CRIU cannot dump one process from two dumps at once.
    hosts = [shared.host(f"host-{i}") for i in range(N)]
    commands = []
    for i, host in enumerate(hosts):
        proc = procs.counter(tmp_path / f"proc-{i}")
        commands.append(
            (host, ["create", "fleet", f"cp-{i}", "--pid", str(proc.pid), "--leave-running"])
        )
    results = _race(shared, tmp_path, commands)

    assert [code for _, code, _ in results] == [0] * N, results
    for _, _, err in results:
        assert "database is locked" not in err
    listed = json.loads(cli.run(["ls", "fleet", "--json"], hosts[0].env).stdout)
    assert [(c["name"], c["host"]) for c in listed] == [(f"cp-{i}", f"host-{i}") for i in range(N)]
    assert_store_and_catalog_agree(shared, {("fleet", f"cp-{i}") for i in range(N)})
    assert scratch_left(*hosts) == []
