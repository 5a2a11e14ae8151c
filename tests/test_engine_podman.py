"""The podman engine, end to end through the CLI, with its own podman storage
(``CONTAINERS_STORAGE_CONF``, ``CONTAINERS_CONF``) and two simulated cryostash hosts
(own scratch and host name) sharing one store and catalog. A busybox counter container
is checkpointed (an exported archive in the store), removed, restored, and goes on
counting; then the podman storage is wiped (a fresh machine with the same layout: a
podman archive records the storage paths of the host that made it, so the second host
has the same paths, as real hosts do) and host B restores it under a new name.
``--leave-running``; a dump refused by CRIU (an established TCP connection) leaves
nothing behind, and succeeds with ``--tcp-established``. Every container is removed
by the fixtures.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.support.containers import (
    COUNTER_SCRIPT,
    TCP_SCRIPT,
    Host,
    assert_goes_on,
    assert_nothing_left,
    build_rootfs,
    podman_env,
    podman_reset,
    read_count,
    require_root_and,
    rootfs_tarball,
    run,
    unique,
    wait_count,
)
from tests.support.processes import wait_until

IMAGE = "localhost/cryostash-test-busybox:1"
LIMITS = ["--ulimit", "nofile=20000:20000", "--ulimit", "nproc=4096:4096"]


@dataclass
class PodmanHost:
    """A podman storage of its own, holding the test image."""

    base: Path
    env: dict[str, str]
    tarball: Path

    def fresh(self) -> None:
        """Wipe the storage (every container and image) and import the image again."""
        podman_reset(self.env, self.base)
        self.env = podman_env(self.base)
        self.podman("import", str(self.tarball), IMAGE)

    def podman(self, *args: str, check: bool = True) -> str:
        return run(["podman", *args], env=self.env, check=check).stdout

    def start(
        self, name: str, data: Path, script: str = COUNTER_SCRIPT, *extra: str
    ) -> None:
        self.podman(
            "run", "-d", "--name", name, "--network", "none", *LIMITS, *extra,
            "-v", f"{data}:/data", IMAGE, "sh", "-c", script,
        )

    def status(self, name: str) -> str | None:
        done = run(
            ["podman", "container", "inspect", "--format", "{{.State.Status}}", name],
            env=self.env, check=False,
        )
        return done.stdout.strip() if done.returncode == 0 else None


@pytest.fixture(scope="module")
def podman_host(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PodmanHost]:
    require_root_and("podman", "runc")
    base = tmp_path_factory.mktemp("podman")
    tar = rootfs_tarball(build_rootfs(base / "rootfs"), base / "rootfs.tar")
    host = PodmanHost(base / "storage", podman_env(base / "storage"), tar)
    try:
        host.podman("import", str(tar), IMAGE)
        yield host
    finally:
        podman_reset(host.env, host.base)


@pytest.fixture
def cs(podman_host: PodmanHost, tmp_path: Path, criu_path: str) -> Iterator[tuple[Host, Host]]:
    """cryostash as host A and host B: own scratch and name, one store and catalog."""
    extra = {"CRYOSTASH_CRIU": criu_path}
    extra.update({k: podman_host.env[k] for k in ("CONTAINERS_STORAGE_CONF", "CONTAINERS_CONF")})
    try:
        yield Host(tmp_path / "cs", "host-a", extra), Host(tmp_path / "cs", "host-b", extra)
    finally:
        run(["podman", "rm", "-af", "-t", "0"], env=podman_host.env, check=False)


def test_podman_counter_goes_on_after_restore_here_and_on_a_fresh_host(
    podman_host: PodmanHost, cs: tuple[Host, Host], tmp_path: Path
) -> None:
    pm = podman_host
    host_a, host_b = cs
    name, data = unique("cs-podman"), tmp_path / "data"
    data.mkdir()
    pm.start(name, data)
    floor = wait_count(data / "counter", 3)

    made = host_a.json("create", name, "cp1", "--engine", "podman")

    assert isinstance(made, dict) and made["engine"] == "podman"
    assert pm.status(name) == "exited"
    pm.podman("rm", name)
    host_a.cli("restore", name, "cp1")  # recorded engine and name
    assert pm.status(name) == "running"
    assert_goes_on(data / "counter", floor)
    pm.podman("rm", "-f", "-t", "0", name)

    pm.fresh()  # host B: no trace of the container, only the image
    other = unique("cs-podman-b")
    restored = host_b.json("restore", name, "cp1", "--as", other)

    assert isinstance(restored, dict) and restored["container"] == other
    assert pm.status(other) == "running"
    assert_goes_on(data / "counter", floor)
    assert host_a.scratch_entries() == [] and host_b.scratch_entries() == []


def test_podman_leave_running_then_restore_after_removal(
    podman_host: PodmanHost, cs: tuple[Host, Host], tmp_path: Path
) -> None:
    pm = podman_host
    host_a, _ = cs
    name, data = unique("cs-podman"), tmp_path / "data"
    data.mkdir()
    pm.start(name, data)
    floor = wait_count(data / "counter", 3)

    host_a.cli("create", name, "live", "--engine", "podman", "--leave-running")

    assert pm.status(name) == "running"
    assert_goes_on(data / "counter", floor)
    pm.podman("rm", "-f", "-t", "0", name)
    host_a.cli("restore", name, "live")
    assert pm.status(name) == "running"
    assert_goes_on(data / "counter", floor)


def test_podman_failed_dump_leaves_nothing_then_tcp_established_dumps(
    podman_host: PodmanHost, cs: tuple[Host, Host], tmp_path: Path
) -> None:
    pm = podman_host
    host_a, _ = cs
    name, data = unique("cs-podman-tcp"), tmp_path / "data"
    data.mkdir()
    pm.start(name, data, TCP_SCRIPT)
    wait_count(data / "counter", 1)
    wait_until(
        lambda: "ESTABLISHED" in pm.podman("exec", name, "netstat", "-tn"), 20, "the connection"
    )

    done = host_a.cli("create", name, "cp", "--engine", "podman", check=False)

    assert done.returncode == 5, done.stderr
    assert f"Cannot checkpoint container {name}: podman container checkpoint failed" in (
        done.stderr
    )
    assert "consider using --tcp-established" in done.stderr, "CRIU's own reason"
    assert_nothing_left(host_a)
    assert pm.status(name) == "running"
    wait_count(data / "counter", (read_count(data / "counter") or 0) + 2)  # still counting

    # The option reaches podman and CRIU: the same container dumps with it.
    host_a.cli("create", name, "cp", "--engine", "podman", "--tcp-established", "--leave-running")
    assert pm.status(name) == "running"
    assert [c["name"] for c in host_a.json("ls", name)] == ["cp"]


def test_podman_read_only_container_is_checkpointed_and_restored(
    podman_host: PodmanHost, cs: tuple[Host, Host], tmp_path: Path
) -> None:
    """``podman run --read-only`` (Kubernetes' ``readOnlyRootFilesystem``): checkpointed
    into the store and restored, counting on, here and on a fresh host."""
    pm = podman_host
    host_a, host_b = cs
    name, data = unique("cs-podman-ro"), tmp_path / "data"
    data.mkdir()
    pm.start(name, data, COUNTER_SCRIPT, "--read-only")
    floor = wait_count(data / "counter", 3)
    assert pm.podman("container", "inspect", "--format", "{{.HostConfig.ReadonlyRootfs}}",
                     name).strip() == "true"
    host_a.cli("create", name, "cp1", "--engine", "podman")
    assert pm.status(name) == "exited"
    pm.podman("rm", name)
    host_a.cli("restore", name, "cp1")
    assert pm.status(name) == "running"
    assert_goes_on(data / "counter", floor)
    pm.podman("rm", "-f", "-t", "0", name)

    pm.fresh()
    other = unique("cs-podman-ro-b")
    host_b.cli("restore", name, "cp1", "--as", other)
    assert pm.status(other) == "running"
    assert_goes_on(data / "counter", floor)
    assert host_a.scratch_entries() == [] and host_b.scratch_entries() == []
