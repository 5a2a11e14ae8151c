"""Podman's own checkpoint archives through ``cryostash import`` / ``export``, for real.

A busybox counter container that keeps 32 MiB of state in its root filesystem (a file it
wrote, so in the archive's ``rootfs-diff.tar``) is checkpointed with ``podman container
checkpoint --export`` (zstd, leaving it running), imported; a small change (the counter
went on, a small file written) and a second archive (gzip) is imported: it stores at
most 15% of the first's bytes. Both export to the very tars podman wrote (every member's
digest, and every byte). The exported first archive is restored with ``podman container
restore --import`` and the counter goes on; the imported second one is restored by
``cryostash restore`` (the podman engine rebuilds the archive). A criu checkpoint is
refused by ``export``. Every container is removed by the fixtures.
"""

from __future__ import annotations

import hashlib
import io
import tarfile
from collections.abc import Iterator
from pathlib import Path

import pytest
import zstandard

from tests.support.containers import (
    COUNTER_SCRIPT,
    Host,
    assert_goes_on,
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
from tests.support.processes import ProcessTracker

IMAGE = "localhost/cryostash-test-busybox:1"
LIMITS = ["--ulimit", "nofile=20000:20000", "--ulimit", "nproc=4096:4096"]
STATEFUL = "head -c 33554432 /dev/urandom > /var-blob && " + COUNTER_SCRIPT


class Podman:
    def __init__(self, base: Path) -> None:
        self.base, self.env = base, podman_env(base)

    def __call__(self, *args: str, check: bool = True) -> str:
        return run(["podman", *args], env=self.env, check=check, timeout=300).stdout

    def status(self, name: str) -> str | None:
        done = run(["podman", "container", "inspect", "--format", "{{.State.Status}}", name],
                   env=self.env, check=False)
        return done.stdout.strip() if done.returncode == 0 else None


@pytest.fixture(scope="module")
def podman(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Podman]:
    require_root_and("podman", "runc")
    base = tmp_path_factory.mktemp("podman-archive")
    tar = rootfs_tarball(build_rootfs(base / "rootfs"), base / "rootfs.tar")
    pm = Podman(base / "storage")
    try:
        pm("import", str(tar), IMAGE)
        yield pm
    finally:
        podman_reset(pm.env, pm.base)


@pytest.fixture
def host(podman: Podman, tmp_path: Path, criu_path: str) -> Iterator[Host]:
    extra = {"CRYOSTASH_CRIU": criu_path}
    extra.update({k: podman.env[k] for k in ("CONTAINERS_STORAGE_CONF", "CONTAINERS_CONF")})
    try:
        yield Host(tmp_path / "cs", "node-1", extra)
    finally:
        podman("rm", "-af", "-t", "0", check=False)


def members(tar: bytes) -> dict[str, str]:
    """SHA-256 of every regular member of an uncompressed tar."""
    with tarfile.open(fileobj=io.BytesIO(tar)) as t:
        return {
            m.name: hashlib.sha256(t.extractfile(m).read()).hexdigest()  # type: ignore[union-attr]
            for m in t.getmembers() if m.isreg()
        }


def test_podman_archive_import_export_restore_and_dedup(
    podman: Podman, host: Host, tmp_path: Path
) -> None:
    name, data = unique("cs-arch"), tmp_path / "data"
    data.mkdir()
    podman("run", "-d", "--name", name, "--network", "none", *LIMITS, "-v", f"{data}:/data",
           IMAGE, "sh", "-c", STATEFUL)
    floor = wait_count(data / "counter", 3)
    first, second = tmp_path / "first.tar.zst", tmp_path / "second.tar.gz"
    with_criu = {**podman.env, "PATH": f"{Path(host.env()['CRYOSTASH_CRIU']).parent}:"
                 f"{podman.env['PATH']}"}
    run(["podman", "container", "checkpoint", "--leave-running", "--export", str(first),
         "--compress", "zstd", name], env=with_criu, timeout=300)
    one = host.json("import", name, "cp1", str(first))
    # A small change: the counter goes on and a small file is written.
    wait_count(data / "counter", (read_count(data / "counter") or 0) + 3)
    podman("exec", name, "sh", "-c", "echo changed > /etc/motd")
    run(["podman", "container", "checkpoint", "--export", str(second), "--compress", "gzip",
         name], env=with_criu, timeout=300)
    two = host.json("import", name, "cp2", str(second))

    assert one["engine"] == two["engine"] == "podman"
    assert one["labels"]["container"] == name and one["labels"]["image"] == IMAGE
    assert one["labels"]["source"] == "podman" and "checkpointed" in one["labels"]
    stored_1, stored_2 = one["stats"]["bytes_stored"], two["stats"]["bytes_stored"]
    print(f"first archive {first.stat().st_size} B, stored {stored_1} B; second archive "
          f"{second.stat().st_size} B, stored {stored_2} B ({stored_2 / stored_1:.1%})")
    assert stored_2 <= 0.15 * stored_1, (stored_1, stored_2)

    # Both export to the very tars podman wrote.
    tar_1 = zstandard.ZstdDecompressor().stream_reader(first.open("rb")).read()
    import gzip

    tar_2 = gzip.decompress(second.read_bytes())
    for cp, original in (("cp1", tar_1), ("cp2", tar_2)):
        out = tmp_path / f"{cp}.tar"
        host.cli("export", name, cp, "-o", str(out), "--compress", "none")
        assert members(out.read_bytes()) == members(original)
        assert out.read_bytes() == original

    # The exported first archive restores with podman itself; the counter goes on.
    assert podman.status(name) == "exited"
    podman("rm", name)
    exported = tmp_path / "cp1-export.tar.zst"
    host.cli("export", name, "cp1", "-o", str(exported))  # zstd, as imported
    run(["podman", "container", "restore", "--import", str(exported)], env=with_criu,
        timeout=300)
    assert podman.status(name) == "running"
    assert_goes_on(data / "counter", floor)
    podman("rm", "-f", "-t", "0", name)

    # The imported second archive restores through cryostash (engine podman).
    restored = host.json("restore", name, "cp2")
    assert restored["container"] == name and podman.status(name) == "running"
    assert_goes_on(data / "counter", floor + 3)
    assert host.scratch_entries() == []


def test_export_refuses_a_criu_checkpoint(
    host: Host, procs: ProcessTracker, tmp_path: Path
) -> None:
    proc = procs.counter(tmp_path / "p")
    host.cli("create", "proc", "cp1", "--pid", str(proc.pid), "--leave-running")

    done = host.cli("export", "proc", "cp1", "-o", str(tmp_path / "x.tar"), check=False)

    assert done.returncode == 2, done.stderr
    assert "cannot export a criu checkpoint as a container archive" in done.stderr
    assert not (tmp_path / "x.tar").exists() and not (tmp_path / "x.tar.partial").exists()
