"""The container engines of the conformance suite (runc, podman, docker) and the session's
container runtimes they (and the per-engine test modules) share.

Session fixtures, registered in ``tests/conftest.py`` and started only by a test that asks
for them: ``runc_rootfs`` (a busybox root filesystem), ``podman_host`` (podman storage of
its own holding the test image; wiped at the end), ``dockerd`` (a private containerd and
dockerd holding the test image; stopped by PID at the end). Each rig removes every
container it started when its test ends.

The counter in every container is :data:`tests.support.containers.COUNTER_SCRIPT`,
writing to ``/data/counter``, a bind mount of a host folder of the test.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.support.containers import (
    COUNTER_SCRIPT,
    TCP_SCRIPT,
    Dockerd,
    build_rootfs,
    podman_env,
    podman_reset,
    private_dockerd,
    require_root_and,
    rootfs_tarball,
    run,
    unique,
)
from tests.support.engine_rigs import EngineRig, Workload
from tests.support.processes import wait_until

#: The test image, in podman's and in docker's naming.
PODMAN_IMAGE = "localhost/cryostash-test-busybox:1"
DOCKER_IMAGE = "cryostash-test-busybox:1"
PODMAN_LIMITS = ["--ulimit", "nofile=20000:20000", "--ulimit", "nproc=4096:4096"]


# --- the session's runtimes -------------------------------------------------------------


@pytest.fixture(scope="session", name="runc_rootfs")
def runc_rootfs_fixture(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A busybox root filesystem that runc bundles copy."""
    require_root_and("runc", "iptables-restore")
    return build_rootfs(tmp_path_factory.mktemp("runc-rootfs") / "rootfs")


@dataclass
class PodmanHost:
    """A podman storage of its own, holding the test image."""

    base: Path
    env: dict[str, str]
    tarball: Path

    def fresh(self) -> None:
        """Wipe the storage (every container and image) and import the image again: a
        fresh machine with the same storage paths (a podman archive records them)."""
        podman_reset(self.env, self.base)
        self.env = podman_env(self.base)
        self.podman("import", str(self.tarball), PODMAN_IMAGE)

    def podman(self, *args: str, check: bool = True, timeout: float = 300) -> str:
        return run(["podman", *args], env=self.env, check=check, timeout=timeout).stdout

    def start(self, name: str, data: Path, script: str = COUNTER_SCRIPT, *extra: str) -> None:
        self.podman(
            "run", "-d", "--name", name, "--network", "none", *PODMAN_LIMITS, *extra,
            "-v", f"{data}:/data", PODMAN_IMAGE, "sh", "-c", script,
        )

    def status(self, name: str) -> str | None:
        done = run(
            ["podman", "container", "inspect", "--format", "{{.State.Status}}", name],
            env=self.env, check=False,
        )
        return done.stdout.strip() if done.returncode == 0 else None

    def remove_all(self) -> None:
        run(["podman", "rm", "-af", "-t", "0"], env=self.env, check=False)

    def storage_env(self) -> dict[str, str]:
        """What cryostash needs to use this storage."""
        return {k: self.env[k] for k in ("CONTAINERS_STORAGE_CONF", "CONTAINERS_CONF")}


@pytest.fixture(scope="session", name="podman_host")
def podman_host_fixture(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PodmanHost]:
    require_root_and("podman", "runc")
    base = tmp_path_factory.mktemp("podman")
    tar = rootfs_tarball(build_rootfs(base / "rootfs"), base / "rootfs.tar")
    host = PodmanHost(base / "storage", podman_env(base / "storage"), tar)
    try:
        host.podman("import", str(tar), PODMAN_IMAGE)
        yield host
    finally:
        podman_reset(host.env, host.base)


@pytest.fixture(scope="session", name="dockerd")
def dockerd_fixture(tmp_path_factory: pytest.TempPathFactory, criu_path: str) -> Iterator[Dockerd]:
    """A private dockerd (own data root, exec root, socket, pidfile) with the test image."""
    require_root_and("dockerd", "docker", "runc", "containerd")
    base = tmp_path_factory.mktemp("docker")
    tar = rootfs_tarball(build_rootfs(base / "rootfs"), base / "rootfs.tar")
    assert os.path.basename(criu_path) == "criu", "dockerd finds CRIU as `criu` on its PATH"
    with private_dockerd(os.path.dirname(criu_path)) as daemon:
        daemon.docker("import", str(tar), DOCKER_IMAGE)
        yield daemon


def docker_remove_all(dockerd: Dockerd) -> None:
    ids = dockerd.docker("ps", "-aq", check=False).stdout.split()
    if ids:
        dockerd.docker("rm", "-f", *ids, check=False)


# --- runc -------------------------------------------------------------------------------


class RuncContainers:
    """Makes bundles, starts containers detached, deletes every id it was told of."""

    def __init__(self, rootfs: Path, work: Path) -> None:
        self.rootfs = rootfs
        self.work = work
        self.ids: list[str] = []

    def bundle(
        self, name: str, script: str = COUNTER_SCRIPT, readonly: bool = False
    ) -> tuple[Path, Path]:
        """A bundle (own copy of the root filesystem) whose /data binds ``work/NAME-data``;
        ``readonly``: the root stays read-only, as ``runc spec`` makes it."""
        bundle = self.work / f"{name}-bundle"
        data = self.work / f"{name}-data"
        data.mkdir(parents=True)
        shutil.copytree(self.rootfs, bundle / "rootfs", symlinks=True)
        run(["runc", "spec", "--bundle", str(bundle)])
        config = json.loads((bundle / "config.json").read_text())
        config["process"]["terminal"] = False
        config["process"]["args"] = ["sh", "-c", script]
        config["root"]["readonly"] = readonly
        config["mounts"].append(
            {"destination": "/data", "type": "bind", "source": str(data),
             "options": ["rbind", "rw"]}
        )
        (bundle / "config.json").write_text(json.dumps(config))
        return bundle, data

    def start(self, cid: str, bundle: Path, stderr: Path | None = None) -> None:
        """``runc run -d``; stdio on /dev/null (or stderr on a host file, which CRIU
        cannot dump)."""
        self.track(cid)
        log = self.work / f"{cid}.runc.log"
        with (stderr or Path("/dev/null")).open("ab") as err:
            done = subprocess.run(
                ["runc", "--log", str(log), "run", "-d", "--bundle", str(bundle), cid],
                stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=err,
                timeout=60, check=False,
            )
        assert done.returncode == 0, log.read_text() if log.exists() else "runc run failed"

    def track(self, cid: str) -> str:
        if cid not in self.ids:
            self.ids.append(cid)
        return cid

    def status(self, cid: str) -> str | None:
        done = run(["runc", "state", cid], check=False)
        return json.loads(done.stdout)["status"] if done.returncode == 0 else None

    def delete(self, cid: str) -> None:
        run(["runc", "delete", "-f", cid])

    def delete_all(self) -> None:
        for cid in self.ids:
            run(["runc", "delete", "-f", cid], check=False)
        self.ids.clear()


class RuncRig(EngineRig):
    """``runc``: a container in a bundle of its own; a restore needs ``--bundle`` (another
    bundle, with another data folder, on host B)."""

    name = "runc"
    image_files = frozenset({"inventory.img", "cryostash-runc.json"})
    missing_message = "no runc container 'no-such-ctr'"

    def __init__(self, home: Path, work: Path, criu: str, rootfs: Path) -> None:
        super().__init__(home, work, {"CRYOSTASH_CRIU": criu})
        self.ctrs = RuncContainers(rootfs, work / "ctrs")

    def start(self, hint: str, read_only: bool = False) -> Workload:
        cid = unique(f"cs-runc-{hint}")
        bundle, data = self.ctrs.bundle(cid, readonly=read_only)
        assert json.loads((bundle / "config.json").read_text())["root"]["readonly"] is read_only
        self.ctrs.start(cid, bundle)
        w = Workload(cid, [], data / "counter", extra={"bundle": bundle, "read_only": read_only})
        w.floor = self.wait_count(w, 3)
        return w

    def running(self, w: Workload) -> bool:
        return self.ctrs.status(w.target) == "running"

    def assert_stopped_by_dump(self, w: Workload) -> None:
        assert self.ctrs.status(w.target) is None, "without --leave-running runc removes it"

    def restore_here_args(self, w: Workload, cp: str) -> list[str]:
        bundle = str(w.extra["bundle"])
        refused = self.host_a.cli("restore", w.target, cp, check=False)  # no --bundle
        assert refused.returncode == 2 and bundle in refused.stderr, refused.stderr
        return ["--bundle", bundle]

    def restored(self, w: Workload, result: dict[str, Any]) -> Workload:
        assert result["container"] == w.target and self.running(w)
        return w

    def stop(self, w: Workload) -> None:
        self.ctrs.delete(w.target)

    def _beside(self, host_name: str, w: Workload, cp: str) -> Workload:
        """Restore into a new bundle (same files, another data folder) as a new id."""
        other = self.ctrs.track(unique("cs-runc-b"))
        bundle, data = self.ctrs.bundle(other, readonly=bool(w.extra.get("read_only")))
        host = self.host_b if host_name == "b" else self.host_a
        host.cli("restore", w.target, cp, "--as", other, "--bundle", str(bundle))
        there = Workload(other, [], data / "counter", w.floor, extra={"bundle": bundle})
        assert self.running(there)
        return there

    def restore_elsewhere(self, w: Workload, cp: str) -> Workload:
        return self._beside("b", w, cp)

    def restore_after_leave_running(self, w: Workload, cp: str) -> Workload:
        twin = self._beside("a", w, cp)
        assert self.running(w)
        self.assert_goes_on(w, self.wait_count(w, 0))  # the original is untouched
        return twin

    def start_undumpable(self, hint: str) -> tuple[Workload, list[str], list[str]]:
        cid = unique(f"cs-runc-{hint}")
        bundle, data = self.ctrs.bundle(cid)
        # Its stderr is a file outside the container: CRIU cannot dump that descriptor.
        self.ctrs.start(cid, bundle, stderr=self.work / "outside.stderr")
        w = Workload(cid, [], data / "counter")
        w.floor = self.wait_count(w, 1)
        return w, [], ["runc checkpoint failed", "dump.log"]

    def close(self) -> None:
        self.ctrs.delete_all()


# --- podman -----------------------------------------------------------------------------


class PodmanRig(EngineRig):
    """``podman``: a container in the session's podman storage; the checkpoint is an
    exported archive (so it exports); host B restores after the storage was wiped."""

    name = "podman"
    image_files = frozenset({"checkpoint.tar", "cryostash-podman.json"})
    missing_message = "no podman container 'no-such-ctr'"

    def __init__(self, home: Path, work: Path, criu: str, pm: PodmanHost) -> None:
        super().__init__(home, work, {"CRYOSTASH_CRIU": criu, **pm.storage_env()})
        self.pm = pm

    def _start(self, hint: str, script: str, *extra: str) -> Workload:
        name = unique(f"cs-podman-{hint}")
        data = self.work / f"{name}-data"
        data.mkdir()
        self.pm.start(name, data, script, *extra)
        return Workload(name, [], data / "counter")

    def start(self, hint: str, read_only: bool = False) -> Workload:
        w = self._start(hint, COUNTER_SCRIPT, *(["--read-only"] if read_only else []))
        if read_only:
            fmt = "{{.HostConfig.ReadonlyRootfs}}"
            assert self.pm.podman("container", "inspect", "--format", fmt, w.target).strip() \
                == "true"
        w.floor = self.wait_count(w, 3)
        return w

    def running(self, w: Workload) -> bool:
        return self.pm.status(w.target) == "running"

    def assert_stopped_by_dump(self, w: Workload) -> None:
        assert self.pm.status(w.target) == "exited"

    def restore_here_args(self, w: Workload, cp: str) -> list[str]:
        self.pm.podman("rm", w.target)
        return []

    def restored(self, w: Workload, result: dict[str, Any]) -> Workload:
        there = Workload(str(result["container"]), [], w.counter, w.floor)
        assert self.running(there)
        return there

    def stop(self, w: Workload) -> None:
        self.pm.podman("rm", "-f", "-t", "0", w.target)

    def restore_elsewhere(self, w: Workload, cp: str) -> Workload:
        self.pm.fresh()  # host B: no trace of the container, only the image
        other = unique("cs-podman-b")
        there = self.restored(w, self.host_b.json("restore", w.target, cp, "--as", other))
        assert there.target == other
        return there

    def restore_after_leave_running(self, w: Workload, cp: str) -> Workload:
        self.stop(w)
        return self.restored(w, self.host_a.json("restore", w.target, cp))

    def start_undumpable(self, hint: str) -> tuple[Workload, list[str], list[str]]:
        w = self._start(hint, TCP_SCRIPT)
        w.floor = self.wait_count(w, 1)
        wait_until(
            lambda: "ESTABLISHED" in self.pm.podman("exec", w.target, "netstat", "-tn"), 20,
            "the TCP connection inside the container",
        )
        return w, [], ["podman container checkpoint failed", "consider using --tcp-established"]

    def after_failed_dump(self, w: Workload) -> None:
        # The option reaches podman and CRIU: the same container dumps with it.
        self.host_a.cli("create", w.target, "cp", *self.create_args(w), "--tcp-established",
                        "--leave-running")
        assert self.running(w)
        assert [c["name"] for c in self.host_a.json("ls", w.target)] == ["cp"]

    def check_export(self, w: Workload, cp: str, out: Path) -> None:
        import tarfile

        self.host_a.cli("export", w.target, cp, "-o", str(out), "--compress", "none")
        with tarfile.open(out) as tar:
            names = tar.getnames()
        assert "config.dump" in names and "checkpoint/inventory.img" in names, names

    def close(self) -> None:
        self.pm.remove_all()


# --- docker -----------------------------------------------------------------------------


class DockerRig(EngineRig):
    """``docker``: a container of the session's dockerd; a restore re-creates it from the
    recorded configuration (which binds a host folder: ``--allow host-mounts``)."""

    name = "docker"
    image_files = frozenset({"cryostash-docker.json"})
    missing_message = "no docker container 'no-such-ctr'"

    def __init__(self, home: Path, work: Path, criu: str, dockerd: Dockerd) -> None:
        super().__init__(
            home, work, {"CRYOSTASH_CRIU": criu, "DOCKER_HOST": dockerd.env["DOCKER_HOST"]}
        )
        self.dockerd = dockerd

    def _start(self, hint: str, script: str) -> Workload:
        name = unique(f"cs-docker-{hint}")
        data = self.work / f"{name}-data"
        data.mkdir()
        self.dockerd.docker(
            "run", "-d", "--name", name, "--network", "none", "-v", f"{data}:/data",
            DOCKER_IMAGE, "sh", "-c", script,
        )
        return Workload(name, [], data / "counter", extra={"data": data})

    def start(self, hint: str, read_only: bool = False) -> Workload:
        assert not read_only, "not a scenario of the docker engine"
        w = self._start(hint, COUNTER_SCRIPT)
        w.floor = self.wait_count(w, 3)
        return w

    def status(self, name: str) -> str | None:
        done = self.dockerd.docker("inspect", "--format", "{{.State.Status}}", name, check=False)
        return done.stdout.strip() if done.returncode == 0 else None

    def running(self, w: Workload) -> bool:
        return self.status(w.target) == "running"

    def assert_stopped_by_dump(self, w: Workload) -> None:
        assert self.status(w.target) == "exited"

    def restore_here_args(self, w: Workload, cp: str) -> list[str]:
        self.dockerd.docker("rm", w.target)
        refused = self.host_a.cli("restore", w.target, cp, check=False)  # binds a host folder
        assert refused.returncode == 2, refused.stderr
        assert f"host-mounts ({w.extra['data']})" in refused.stderr
        assert "--allow host-mounts" in refused.stderr
        assert self.status(w.target) is None  # nothing was created
        return ["--allow", "host-mounts"]

    def restored(self, w: Workload, result: dict[str, Any]) -> Workload:
        there = Workload(str(result["container"]), [], w.counter, w.floor, extra=w.extra)
        assert self.running(there)
        return there

    def stop(self, w: Workload) -> None:
        self.dockerd.docker("rm", "-f", w.target)

    def restore_elsewhere(self, w: Workload, cp: str) -> Workload:
        other = unique("cs-docker-b")
        result = self.host_b.json("restore", w.target, cp, "--as", other, "--allow",
                                  "host-mounts")
        assert result["created"] is True
        return self.restored(w, result)

    def restore_after_leave_running(self, w: Workload, cp: str) -> Workload:
        self.dockerd.docker("stop", "-t", "0", w.target)
        result = self.host_a.json("restore", w.target, cp)  # into the stopped container
        assert result["created"] is False
        return self.restored(w, result)

    def start_undumpable(self, hint: str) -> tuple[Workload, list[str], list[str]]:
        w = self._start(hint, TCP_SCRIPT)
        w.floor = self.wait_count(w, 1)
        wait_until(
            lambda: "ESTABLISHED" in self.dockerd.docker("exec", w.target, "netstat",
                                                         "-tn").stdout,
            20, "the TCP connection inside the container",
        )
        return w, [], ["docker checkpoint create failed", "consider using --tcp-established"]

    def after_failed_dump(self, w: Workload) -> None:
        refused = self.host_a.cli("create", w.target, "cp", *self.create_args(w),
                                  "--tcp-established", check=False)
        assert refused.returncode == 2 and "takes no checkpoint options" in refused.stderr

    def placed_checkpoints(self) -> list[str]:
        """Checkpoint folders left in the daemon's data root (restore removes its own)."""
        root = Path(self.dockerd.docker("info", "--format", "{{.DockerRootDir}}").stdout.strip())
        return sorted(str(p) for p in root.glob("containers/*/checkpoints/*"))

    def assert_clean(self) -> None:
        assert self.placed_checkpoints() == []

    def close(self) -> None:
        docker_remove_all(self.dockerd)
