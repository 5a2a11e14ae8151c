"""The runc engine, end to end through the CLI: a busybox counter container is
checkpointed into the store, removed, restored (same id; new id in another bundle on a
second simulated host) and goes on counting; ``--leave-running``; a failed dump leaves
nothing behind. Every container a test starts is deleted by the ``runc_ctrs`` fixture.
"""

from __future__ import annotations

import json
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.containers import (
    COUNTER_SCRIPT,
    Host,
    assert_goes_on,
    assert_nothing_left,
    build_rootfs,
    read_count,
    require_root_and,
    run,
    unique,
    wait_count,
)


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

    def delete_all(self) -> None:
        for cid in self.ids:
            run(["runc", "delete", "-f", cid], check=False)
        self.ids.clear()


@pytest.fixture(scope="module")
def rootfs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    require_root_and("runc", "iptables-restore")
    return build_rootfs(tmp_path_factory.mktemp("runc-rootfs") / "rootfs")


@pytest.fixture
def runc_ctrs(rootfs: Path, tmp_path: Path, criu_path: str) -> Iterator[RuncContainers]:
    ctrs = RuncContainers(rootfs, tmp_path / "ctrs")
    try:
        yield ctrs
    finally:
        ctrs.delete_all()


@pytest.fixture
def hosts(tmp_path: Path, criu_path: str) -> tuple[Host, Host]:
    extra = {"CRYOSTASH_CRIU": criu_path}
    return Host(tmp_path / "cs", "host-a", extra), Host(tmp_path / "cs", "host-b", extra)


def test_runc_counter_goes_on_after_restore_here_and_on_another_host(
    runc_ctrs: RuncContainers, hosts: tuple[Host, Host]
) -> None:
    host_a, host_b = hosts
    cid = unique("cs-runc")
    bundle, data = runc_ctrs.bundle("a")
    runc_ctrs.start(cid, bundle)
    floor = wait_count(data / "counter", 3)

    made = host_a.json("create", cid, "cp1", "--engine", "runc")

    assert isinstance(made, dict) and made["engine"] == "runc"
    assert runc_ctrs.status(cid) is None, "without --leave-running runc removes the container"
    assert [(c["target"], c["engine"]) for c in host_a.json("ls")] == [(cid, "runc")]
    files = [f["path"] for f in host_a.json("inspect", cid, "cp1")["files"]]
    assert "cryostash-runc.json" in files and "inventory.img" in files

    refused = host_a.cli("restore", cid, "cp1", check=False)  # no --bundle: refused
    assert refused.returncode == 2 and str(bundle) in refused.stderr, refused.stderr
    restored = host_a.json("restore", cid, "cp1", "--bundle", str(bundle))  # recorded id

    assert isinstance(restored, dict) and restored["container"] == cid
    assert runc_ctrs.status(cid) == "running"
    assert_goes_on(data / "counter", floor)
    run(["runc", "delete", "-f", cid])

    # Host B: its own scratch, its own bundle (same files, another data folder), a new id.
    other = runc_ctrs.track(unique("cs-runc-b"))
    bundle_b, data_b = runc_ctrs.bundle("b")
    host_b.cli("restore", cid, "cp1", "--as", other, "--bundle", str(bundle_b))

    assert runc_ctrs.status(other) == "running"
    assert_goes_on(data_b / "counter", floor)
    assert host_a.scratch_entries() == [] and host_b.scratch_entries() == []
    events = [(e["host"], e["action"]) for e in host_a.json("events", cid)]
    assert events == [("host-a", "checkpoint"), ("host-a", "restore"), ("host-b", "restore")]


def test_runc_leave_running_keeps_counting_and_restores_beside_it(
    runc_ctrs: RuncContainers, hosts: tuple[Host, Host]
) -> None:
    host_a, _ = hosts
    cid = unique("cs-runc")
    bundle, data = runc_ctrs.bundle("a")
    runc_ctrs.start(cid, bundle)
    floor = wait_count(data / "counter", 3)

    host_a.cli("create", cid, "live", "--engine", "runc", "--leave-running")

    assert runc_ctrs.status(cid) == "running"
    after = assert_goes_on(data / "counter", floor)
    twin = runc_ctrs.track(unique("cs-runc-twin"))
    bundle_b, data_b = runc_ctrs.bundle("b")
    host_a.cli("restore", cid, "live", "--as", twin, "--bundle", str(bundle_b))
    assert runc_ctrs.status(twin) == "running" and runc_ctrs.status(cid) == "running"
    assert_goes_on(data_b / "counter", floor)
    assert_goes_on(data / "counter", after[-1])  # the original is untouched


def test_runc_failed_dump_leaves_nothing_and_the_container_running(
    runc_ctrs: RuncContainers, hosts: tuple[Host, Host]
) -> None:
    host_a, _ = hosts
    cid = unique("cs-runc-bad")
    bundle, data = runc_ctrs.bundle("a")
    # Its stderr is a file outside the container: CRIU cannot dump that descriptor.
    runc_ctrs.start(cid, bundle, stderr=runc_ctrs.work / "outside.stderr")
    wait_count(data / "counter", 1)

    done = host_a.cli("create", cid, "cp", "--engine", "runc", check=False)

    assert done.returncode == 5, done.stderr
    assert f"Cannot checkpoint container {cid}: runc checkpoint failed" in done.stderr
    assert "dump.log" in done.stderr, "the reason carries the tail of CRIU's log"
    assert_nothing_left(host_a)
    assert runc_ctrs.status(cid) == "running"
    value = read_count(data / "counter") or 0
    wait_count(data / "counter", value + 2)  # still counting

    missing = host_a.cli("create", "no-such-ctr", "cp", "--engine", "runc", check=False)
    assert missing.returncode == 2 and "no runc container 'no-such-ctr'" in missing.stderr
    assert_nothing_left(host_a)


def test_runc_read_only_root_is_checkpointed_and_restored(
    runc_ctrs: RuncContainers, hosts: tuple[Host, Host]
) -> None:
    """``runc spec``'s default, a read-only root file system (Kubernetes'
    ``readOnlyRootFilesystem``): checkpointed into the store and restored, counting on,
    here and on another host into a fresh read-only bundle."""
    host_a, host_b = hosts
    cid = unique("cs-runc-ro")
    bundle, data = runc_ctrs.bundle("ro", readonly=True)
    assert json.loads((bundle / "config.json").read_text())["root"]["readonly"] is True
    runc_ctrs.start(cid, bundle)
    floor = wait_count(data / "counter", 3)
    host_a.cli("create", cid, "cp1", "--engine", "runc")
    assert runc_ctrs.status(cid) is None
    restored = host_a.json("restore", cid, "cp1", "--bundle", str(bundle))
    assert isinstance(restored, dict) and restored["container"] == cid
    assert runc_ctrs.status(cid) == "running"
    assert_goes_on(data / "counter", floor)
    run(["runc", "delete", "-f", cid])
    other = runc_ctrs.track(unique("cs-runc-ro-b"))
    bundle_b, data_b = runc_ctrs.bundle("ro-b", readonly=True)
    host_b.cli("restore", cid, "cp1", "--as", other, "--bundle", str(bundle_b))
    assert runc_ctrs.status(other) == "running"
    assert_goes_on(data_b / "counter", floor)
    assert host_a.scratch_entries() == [] and host_b.scratch_entries() == []
