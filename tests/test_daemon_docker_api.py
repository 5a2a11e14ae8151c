"""Docker's checkpoint API on the daemon's socket, with the real ``docker`` command line as
the client (no dockerd): ``docker -H unix://SOCK checkpoint create|ls|rm`` of a runc
busybox counter container, Docker's error words and statuses for a bad name, a name
taken and a missing checkpoint; ``/_ping`` and ``/version`` as Docker's client reads them.
Every container a test starts is deleted by the runc tests' ``runc_ctrs`` fixture; the
daemon is stopped by SIGTERM (exit 0, socket gone).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.support import daemon_rig
from tests.support.container_rigs import RuncContainers
from tests.support.containers import unique, wait_count
from tests.support.daemon_rig import Daemon
from tests.support.requirements import missing

DockerCli = Callable[..., subprocess.CompletedProcess[str]]


@pytest.fixture
def runc_ctrs(runc_rootfs: Path, tmp_path: Path, criu_path: str) -> Iterator[RuncContainers]:
    """runc containers on the session's root filesystem; every one deleted at the end."""
    ctrs = RuncContainers(runc_rootfs, tmp_path / "ctrs")
    try:
        yield ctrs
    finally:
        ctrs.delete_all()


@pytest.fixture
def daemon(tmp_path: Path, criu_path: str) -> Iterator[Daemon]:
    with daemon_rig.running(tmp_path / "cs", criu_path, "--engine", "runc") as running:
        yield running


@pytest.fixture
def docker(daemon: Daemon, tmp_path: Path) -> DockerCli:
    """Run the real ``docker`` command line against the daemon's socket."""
    binary = shutil.which("docker")
    if binary is None:
        missing("docker", "the docker command line is not installed: scripts/install-runtimes")
    config = tmp_path / "docker-config"
    config.mkdir()
    env = {**os.environ, "DOCKER_CONFIG": str(config)}
    env.pop("DOCKER_HOST", None)
    env.pop("DOCKER_CONTEXT", None)

    def run(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [str(binary), "-H", f"unix://{daemon.socket}", *args], env=env,
            stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=120, check=False,
        )

    return run


def test_docker_cli_creates_lists_and_removes_checkpoints(
    docker: DockerCli, daemon: Daemon, runc_ctrs: RuncContainers
) -> None:
    run = docker
    cid = unique("cs-dock")
    bundle, data = runc_ctrs.bundle("a")
    runc_ctrs.start(cid, bundle)
    wait_count(data / "counter", 3)

    made = run("checkpoint", "create", "--leave-running", cid, "cp1")
    assert made.returncode == 0, made.stderr
    assert made.stdout.strip() == "cp1"
    assert runc_ctrs.status(cid) == "running"
    listed = run("checkpoint", "ls", cid)
    assert listed.returncode == 0, listed.stderr
    assert listed.stdout.split("\n")[:2] == ["CHECKPOINT NAME", "cp1"]
    rows = daemon.ok("ls", target=cid)["rows"]
    assert [(r["info"]["name"], r["info"]["engine"]) for r in rows] == [("cp1", "runc")]

    taken = run("checkpoint", "create", "--leave-running", cid, "cp1")
    assert taken.returncode == 1
    assert taken.stderr.strip() == (
        f"Error response from daemon: checkpoint with name cp1 already exists for container {cid}"
    )
    bad = run("checkpoint", "create", cid, "b@d")
    assert bad.returncode == 1
    assert bad.stderr.strip() == (
        "Error response from daemon: Invalid checkpoint ID (b@d), only "
        "[a-zA-Z0-9][a-zA-Z0-9_.-] are allowed"
    )
    absent = run("checkpoint", "rm", cid, "nope")
    assert absent.returncode == 1
    assert absent.stderr.strip() == (
        f"Error response from daemon: checkpoint nope does not exist for container {cid}"
    )
    elsewhere = run("checkpoint", "ls", "--checkpoint-dir", "/tmp/elsewhere", cid)
    assert elsewhere.returncode == 1 and "is not allowed" in elsewhere.stderr

    removed = run("checkpoint", "rm", cid, "cp1")
    assert removed.returncode == 0, removed.stderr
    assert run("checkpoint", "ls", cid).stdout.strip() == "CHECKPOINT NAME"

    # Docker's statuses, as its daemon answers them (every checkpoint error is a 500).
    route = f"/v1.41/containers/{cid}/checkpoints"
    status, headers, body = daemon.raw("POST", route, b'{"CheckpointID": "b@d"}')
    assert status == 500 and headers["Content-Type"] == "application/json"
    assert json.loads(body)["message"].startswith("Invalid checkpoint ID (b@d)")
    status, _, body = daemon.raw("DELETE", f"{route}/nope")
    assert status == 500
    assert json.loads(body) == {"message": f"checkpoint nope does not exist for container {cid}"}
    status, _, body = daemon.raw("GET", route)
    assert (status, json.loads(body)) == (200, [])


def test_ping_and_version_answer_as_dockers(daemon: Daemon, docker: DockerCli) -> None:
    status, headers, body = daemon.raw("GET", "/_ping")
    assert (status, body) == (200, b"OK")
    assert headers["API-Version"] == "1.41" and headers["Docker-Experimental"] == "true"
    assert headers["OSType"] == "linux"
    status, headers, _ = daemon.raw("HEAD", "/v1.41/_ping")
    assert status == 200 and headers["API-Version"] == "1.41"
    status, _, body = daemon.raw("GET", "/v1.41/version")
    assert status == 200 and json.loads(body)["ApiVersion"] == "1.41"
    status, _, body = daemon.raw("GET", "/v1.41/info")
    assert (status, json.loads(body)) == (404, {"message": "page not found"})
    shown = docker("version", "--format", "{{.Server.APIVersion}}")
    assert shown.returncode == 0 and shown.stdout.strip() == "1.41", shown.stderr


def test_without_engine_the_docker_routes_answer_501(tmp_path: Path, criu_path: str) -> None:
    with daemon_rig.running(tmp_path / "cs", criu_path) as daemon:
        status, _, body = daemon.raw("GET", "/containers/web/checkpoints")
        assert status == 501 and "--engine runc|podman|docker" in json.loads(body)["message"]
