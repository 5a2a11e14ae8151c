"""Podman's own checkpoint archives through ``cryostash import`` / ``export``, for real.

A busybox counter container that keeps 32 MiB of state in its root filesystem (a file it
wrote, so in the archive's ``rootfs-diff.tar``) is checkpointed with ``podman container
checkpoint --export`` (zstd, leaving it running), imported; a small change (the counter
went on, a small file written) and a second archive (gzip) is imported: it stores at
most 15% of the first's bytes. Both export to the very tars podman wrote (every member's
digest, and every byte). The exported first archive is restored with ``podman container
restore --import`` and the counter goes on; the imported second one is restored by
``cryostash restore`` (the podman engine rebuilds the archive). A criu checkpoint is
refused by ``export`` (``test_engine_conformance.py``, on every engine but podman).
Runs on the session's podman storage; every container is removed by the fixtures.
"""

from __future__ import annotations

import hashlib
import io
import tarfile
from collections.abc import Iterator
from pathlib import Path

import pytest
import zstandard

from tests.support.cli import Host
from tests.support.container_rigs import PODMAN_IMAGE as IMAGE
from tests.support.container_rigs import PODMAN_LIMITS as LIMITS
from tests.support.container_rigs import PodmanHost
from tests.support.containers import (
    COUNTER_SCRIPT,
    assert_goes_on,
    read_count,
    run,
    unique,
    wait_count,
)

STATEFUL = "head -c 33554432 /dev/urandom > /var-blob && " + COUNTER_SCRIPT


@pytest.fixture
def podman(podman_host: PodmanHost) -> Iterator[PodmanHost]:
    """The session's podman storage; every container removed after the test."""
    try:
        yield podman_host
    finally:
        podman_host.remove_all()


@pytest.fixture
def host(podman: PodmanHost, tmp_path: Path, criu_path: str) -> Host:
    return Host(tmp_path / "cs", "node-1", {"CRYOSTASH_CRIU": criu_path, **podman.storage_env()})


def members(tar: bytes) -> dict[str, str]:
    """SHA-256 of every regular member of an uncompressed tar."""
    with tarfile.open(fileobj=io.BytesIO(tar)) as t:
        return {
            m.name: hashlib.sha256(t.extractfile(m).read()).hexdigest()  # type: ignore[union-attr]
            for m in t.getmembers() if m.isreg()
        }


def test_podman_archive_import_export_restore_and_dedup(
    podman: PodmanHost, host: Host, tmp_path: Path
) -> None:
    name, data = unique("cs-arch"), tmp_path / "data"
    data.mkdir()
    podman.podman("run", "-d", "--name", name, "--network", "none", *LIMITS, "-v", f"{data}:/data",
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
    podman.podman("exec", name, "sh", "-c", "echo changed > /etc/motd")
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
    podman.podman("rm", name)
    exported = tmp_path / "cp1-export.tar.zst"
    host.cli("export", name, "cp1", "-o", str(exported))  # zstd, as imported
    run(["podman", "container", "restore", "--import", str(exported)], env=with_criu,
        timeout=300)
    assert podman.status(name) == "running"
    assert_goes_on(data / "counter", floor)
    podman.podman("rm", "-f", "-t", "0", name)

    # The imported second archive restores through cryostash (engine podman).
    restored = host.json("restore", name, "cp2")
    assert restored["container"] == name and podman.status(name) == "running"
    assert_goes_on(data / "counter", floor + 3)
    assert host.scratch_entries() == []
