"""The docker engine, end to end through the CLI, against a private ``dockerd``
(module-scoped: own data root, exec root, socket and pidfile; stopped by PID). A busybox
counter container (image made with ``docker import``; no registry) is checkpointed into
the store, removed, re-created and restored from the recorded configuration, here and
under a new name by a second simulated host, and goes on counting; ``--leave-running``
then a restore into the same, stopped container; a dump refused by CRIU leaves nothing
behind. Every container is removed by the fixtures.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.containers import (
    COUNTER_SCRIPT,
    TCP_SCRIPT,
    Dockerd,
    Host,
    assert_goes_on,
    assert_nothing_left,
    build_rootfs,
    private_dockerd,
    read_count,
    require_root_and,
    rootfs_tarball,
    unique,
    wait_count,
)
from tests.support.processes import wait_until

IMAGE = "cryostash-test-busybox:1"


@pytest.fixture(scope="module")
def dockerd(tmp_path_factory: pytest.TempPathFactory, criu_path: str) -> Iterator[Dockerd]:
    require_root_and("dockerd", "docker", "runc", "containerd")
    base = tmp_path_factory.mktemp("docker")
    tar = rootfs_tarball(build_rootfs(base / "rootfs"), base / "rootfs.tar")
    criu_dir = os.path.dirname(criu_path)
    assert os.path.basename(criu_path) == "criu", "dockerd finds CRIU as `criu` on its PATH"
    with private_dockerd(criu_dir) as daemon:
        daemon.docker("import", str(tar), IMAGE)
        yield daemon


@pytest.fixture
def cs(dockerd: Dockerd, tmp_path: Path, criu_path: str) -> Iterator[tuple[Host, Host]]:
    """cryostash as host A and host B (own scratch and name), one store and catalog."""
    extra = {"CRYOSTASH_CRIU": criu_path, "DOCKER_HOST": dockerd.env["DOCKER_HOST"]}
    try:
        yield Host(tmp_path / "cs", "host-a", extra), Host(tmp_path / "cs", "host-b", extra)
    finally:
        ids = dockerd.docker("ps", "-aq", check=False).stdout.split()
        if ids:
            dockerd.docker("rm", "-f", *ids, check=False)


def start(dockerd: Dockerd, name: str, data: Path, script: str = COUNTER_SCRIPT) -> None:
    dockerd.docker(
        "run", "-d", "--name", name, "--network", "none", "-v", f"{data}:/data",
        IMAGE, "sh", "-c", script,
    )


def status(dockerd: Dockerd, name: str) -> str | None:
    done = dockerd.docker("inspect", "--format", "{{.State.Status}}", name, check=False)
    return done.stdout.strip() if done.returncode == 0 else None


def placed_checkpoints(dockerd: Dockerd) -> list[str]:
    """Checkpoint folders left in the daemon's data root (restore must remove its own)."""
    root = Path(dockerd.docker("info", "--format", "{{.DockerRootDir}}").stdout.strip())
    return sorted(str(p) for p in root.glob("containers/*/checkpoints/*"))


def test_docker_counter_goes_on_after_restore_here_and_as_another_name(
    dockerd: Dockerd, cs: tuple[Host, Host], tmp_path: Path
) -> None:
    host_a, host_b = cs
    name, data = unique("cs-docker"), tmp_path / "data"
    data.mkdir()
    start(dockerd, name, data)
    floor = wait_count(data / "counter", 3)

    made = host_a.json("create", name, "cp1", "--engine", "docker")

    assert isinstance(made, dict) and made["engine"] == "docker"
    assert status(dockerd, name) == "exited"
    dockerd.docker("rm", name)
    refused = host_a.cli("restore", name, "cp1", check=False)  # it binds a host folder
    assert refused.returncode == 2, refused.stderr
    assert f"host-mounts ({data})" in refused.stderr and "--allow host-mounts" in refused.stderr
    assert status(dockerd, name) is None  # nothing was created
    restored = host_a.json("restore", name, "cp1", "--allow", "host-mounts")  # re-created
    assert isinstance(restored, dict) and restored["created"] is True
    assert status(dockerd, name) == "running"
    assert_goes_on(data / "counter", floor)
    dockerd.docker("rm", "-f", name)

    other = unique("cs-docker-b")
    host_b.cli("restore", name, "cp1", "--as", other, "--allow", "host-mounts")

    assert status(dockerd, other) == "running"
    assert_goes_on(data / "counter", floor)
    assert placed_checkpoints(dockerd) == []
    assert host_a.scratch_entries() == [] and host_b.scratch_entries() == []


def test_docker_leave_running_then_restore_into_the_stopped_container(
    dockerd: Dockerd, cs: tuple[Host, Host], tmp_path: Path
) -> None:
    host_a, _ = cs
    name, data = unique("cs-docker"), tmp_path / "data"
    data.mkdir()
    start(dockerd, name, data)
    floor = wait_count(data / "counter", 3)

    host_a.cli("create", name, "live", "--engine", "docker", "--leave-running")

    assert status(dockerd, name) == "running"
    assert_goes_on(data / "counter", floor)
    dockerd.docker("stop", "-t", "0", name)
    restored = host_a.json("restore", name, "live")
    assert isinstance(restored, dict) and restored["created"] is False
    assert status(dockerd, name) == "running"
    assert_goes_on(data / "counter", floor)
    assert placed_checkpoints(dockerd) == []


def test_docker_failed_dump_leaves_nothing_and_the_container_running(
    dockerd: Dockerd, cs: tuple[Host, Host], tmp_path: Path
) -> None:
    host_a, _ = cs
    name, data = unique("cs-docker-tcp"), tmp_path / "data"
    data.mkdir()
    start(dockerd, name, data, TCP_SCRIPT)
    wait_count(data / "counter", 1)
    wait_until(
        lambda: "ESTABLISHED" in dockerd.docker("exec", name, "netstat", "-tn").stdout,
        20,
        "the TCP connection inside the container",
    )

    done = host_a.cli("create", name, "cp", "--engine", "docker", check=False)

    assert done.returncode == 5, done.stderr
    assert f"Cannot checkpoint container {name}: docker checkpoint create failed" in done.stderr
    assert "consider using --tcp-established" in done.stderr, "CRIU's own reason"
    assert_nothing_left(host_a)
    assert status(dockerd, name) == "running"
    wait_count(data / "counter", (read_count(data / "counter") or 0) + 2)  # still counting

    refused = host_a.cli(
        "create", name, "cp", "--engine", "docker", "--tcp-established", check=False
    )
    assert refused.returncode == 2 and "takes no checkpoint options" in refused.stderr
    assert_nothing_left(host_a)


def _planted(image_dir: Path, **record: object) -> Path:
    """An image folder as a restore would fetch it, with a docker side-file of ``record``."""
    (image_dir / "checkpoint").mkdir(parents=True)
    (image_dir / "cryostash-docker.json").write_text(json.dumps(
        {"engine": "docker", "container_name": unique("cs-planted"), "image": IMAGE,
         "config": {"Image": IMAGE, "Cmd": ["sh"]}, "checkpoint": "checkpoint", **record}
    ))
    return image_dir


def test_docker_side_file_is_untrusted(dockerd: Dockerd, tmp_path: Path) -> None:
    from cryostash import IntegrityError, UsageError
    from cryostash.engines.docker import DockerEngine
    from cryostash.types import RestoreOptions

    engine = DockerEngine(socket=str(dockerd.socket))
    escape_dir = _planted(tmp_path / "a", checkpoint="/etc")
    with pytest.raises(IntegrityError, match="only 'checkpoint' is accepted"):
        engine.restore(escape_dir, RestoreOptions())
    with pytest.raises(IntegrityError):
        engine.restore(_planted(tmp_path / "b", checkpoint="../../etc"), RestoreOptions())

    hostile = {"Privileged": True, "Binds": ["/:/host"], "NetworkMode": "none"}
    image_dir = _planted(tmp_path / "c", host_config=hostile)
    with pytest.raises(UsageError) as refused:
        engine.restore(image_dir, RestoreOptions())
    message = str(refused.value)
    assert "privileged (Privileged: true)" in message and "host-mounts (/)" in message
    assert "--allow host-mounts --allow privileged" in message
    with pytest.raises(UsageError, match="privileged"):  # one allowed is not enough
        engine.restore(image_dir, RestoreOptions(allow=frozenset({"host-mounts"})))
    assert dockerd.docker("ps", "-aq").stdout.split() == []  # no container was created
