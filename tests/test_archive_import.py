"""``cryostash import`` / ``export`` of checkpoint archives built here, through the CLI.

Hostile archives (``../x``, absolute paths, links, devices, FIFOs, a 10 GiB sparse
claim, a 10 GiB size claim, an oversized member, truncated tar and gzip, a repeated
member, bytes that are no tar) are refused with exit 7 and a message naming the member;
nothing is left in the store, the catalog or scratch. A CRI-O-like archive (what the
kubelet writes) is imported from a file and from stdin (plain, gzip, zstd): labels from
its annotations and file name, ``ls --label``, ``--latest``, an export that is the same
tar byte for byte, and a second archive after a small change that stores a fraction of
the first. Real components only: the CLI as a process, a local store, SQLite.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import os
import subprocess
import sys
import tarfile
from collections.abc import Callable
from pathlib import Path

import pytest
import zstandard

from tests.support.archives import CONFIG, checkpoint_archive, entry, noise, tar_bytes
from tests.support.cli import Host, assert_nothing_left
from tests.support.containers import run

KUBELET_NAME = "checkpoint-counters_shop-counter-2026-01-02T03:14:15Z.tar"


def members_digests(archive: bytes) -> dict[str, str]:
    with tarfile.open(fileobj=io.BytesIO(archive)) as tar:
        return {
            m.name: hashlib.sha256(tar.extractfile(m).read()).hexdigest()  # type: ignore[union-attr]
            for m in tar.getmembers() if m.isreg()
        }


@pytest.fixture
def host(tmp_path: Path) -> Host:
    return Host(tmp_path / "cs", "node-1")


def cli_bytes(host: Host, *args: str, stdin: bytes = b"") -> tuple[int, bytes, str]:
    """``cryostash ARGS`` with binary stdin and stdout: (exit code, stdout, stderr)."""
    done = subprocess.run(
        [sys.executable, "-m", "cryostash", *args], input=stdin,
        capture_output=True, env=host.env(), timeout=120, check=False,
    )
    return done.returncode, done.stdout, done.stderr.decode()


def import_stdin(host: Host, data: bytes, *args: str) -> tuple[int, str, str]:
    code, out, err = cli_bytes(host, "import", *args, "-", stdin=data)
    return code, out.decode(), err


# --- hostile archives ------------------------------------------------------------------


def _sparse_claim() -> bytes:
    """A PAX 1.0 sparse member claiming 10 GiB (one 512-byte block stored)."""
    info = tarfile.TarInfo("checkpoint/pages-1.img")
    info.size = 1024
    info.pax_headers = {
        "GNU.sparse.major": "1", "GNU.sparse.minor": "0",
        "GNU.sparse.name": "checkpoint/pages-1.img", "GNU.sparse.realsize": str(10 << 30),
    }
    return tar_bytes([(info, b"1\n0\n512\n".ljust(512, b"\0") + b"x" * 512)])


def _size_claim() -> bytes:
    """A header claiming a 10 GiB member followed by 1 KiB of data and an end block."""
    info = tarfile.TarInfo("checkpoint/pages-1.img")
    info.size = 10 << 30
    return info.tobuf(tarfile.GNU_FORMAT) + b"x" * 1024 + b"\0" * 1024


def _truncated() -> bytes:
    whole = checkpoint_archive(noise(8192, 1))
    return whole[: whole.index(noise(8192, 1)) + 3000]  # cut inside pages-1.img


def _no_trailer() -> bytes:
    whole = tar_bytes([entry("config.dump", b"{}")])
    return whole[:1024]  # header and data block, no end-of-archive blocks


def _not_utf8() -> bytes:
    info = tarfile.TarInfo("checkpoint/bad-\udcff.img")
    return info.tobuf(tarfile.GNU_FORMAT, "utf-8", "surrogateescape") + b"\0" * 1024


HOSTILE: dict[str, tuple[Callable[[], bytes], str]] = {
    "dotdot": (lambda: tar_bytes([entry("../x", b"evil")]), "'../x' has a path that is not"),
    "dot-dotdot": (lambda: tar_bytes([entry("./", kind=tarfile.DIRTYPE),
                                       entry("./../x", b"e")]), "'./../x' has a path"),
    "dot-file": (lambda: tar_bytes([entry(".", b"e")]), "has a path that is not"),
    "nested-dotdot": (
        lambda: tar_bytes([entry("checkpoint/../../x", b"e")]), "checkpoint/../../x"
    ),
    "absolute": (lambda: tar_bytes([entry("/etc/cs-x", b"e")]), "absolute"),
    "symlink-out": (
        lambda: tar_bytes([entry("checkpoint", kind=tarfile.SYMTYPE, linkname="/etc")]),
        "is a link (to '/etc')",
    ),
    "hardlink": (
        lambda: tar_bytes([entry("a", b"x"), entry("b", kind=tarfile.LNKTYPE, linkname="a")]),
        "links are refused",
    ),
    "device": (
        lambda: tar_bytes([entry("dev/null", kind=tarfile.CHRTYPE, devmajor=1, devminor=3)]),
        "device node",
    ),
    "fifo": (lambda: tar_bytes([entry("pipe", kind=tarfile.FIFOTYPE)]), "device node or FIFO"),
    "sparse-10g": (_sparse_claim, "sparse members are refused"),
    "size-claim-10g": (_size_claim, "truncated tar archive"),
    "truncated-tar": (_truncated, "truncated tar archive"),
    "no-trailer": (_no_trailer, "no end-of-archive blocks"),
    "truncated-gzip": (
        lambda: gzip.compress(checkpoint_archive(noise(8192, 2)))[:-40], "corrupt or truncated"
    ),
    "twice": (
        lambda: tar_bytes([entry("config.dump", b"{}"), entry("config.dump", b"[]")]),
        "appears twice",
    ),
    "not-a-tar": (lambda: noise(4096, 3), "not a readable tar archive"),
    "empty": (lambda: b"", "empty file"),
    "not-utf8": (_not_utf8, "is not UTF-8"),
}


@pytest.mark.parametrize("case", sorted(HOSTILE))
def test_hostile_archive_is_refused_and_nothing_is_written(
    host: Host, tmp_path: Path, case: str
) -> None:
    build, message = HOSTILE[case]
    archive = tmp_path / f"{case}.tar"
    archive.write_bytes(build())

    done = host.cli("import", "ctr", "cp1", str(archive), check=False)

    assert done.returncode == 7, done.stderr
    assert message in done.stderr and "Error: " in done.stderr
    assert_nothing_left(host)
    assert not (tmp_path / "x").exists() and not Path("/etc/cs-x").exists()


def test_member_over_the_size_limit_is_refused(host: Host, tmp_path: Path) -> None:
    archive = tmp_path / "big.tar"
    archive.write_bytes(checkpoint_archive(noise(4096, 4)))

    done = host.cli("import", "ctr", "cp1", str(archive), "--max-member-size", "2K", check=False)

    assert done.returncode == 7, done.stderr
    assert "'checkpoint/pages-1.img' claims 4096 bytes, over the 2048-byte limit" in done.stderr
    assert_nothing_left(host)


def test_bad_name_or_missing_file_is_a_usage_error(host: Host, tmp_path: Path) -> None:
    done = host.cli("import", "ctr", "cp1", str(tmp_path / "absent.tar"), check=False)
    assert done.returncode == 2 and "cannot read" in done.stderr
    done = host.cli("import", "ctr", "/bad", str(tmp_path / "absent.tar"), check=False)
    assert done.returncode == 2 and "Invalid checkpoint ID" in done.stderr
    assert_nothing_left(host)


# --- a CRI-O archive in and out ----------------------------------------------------------


@pytest.mark.parametrize("compression", ["none", "gzip", "zstd"])
def test_kubelet_archive_round_trips_bit_exactly_with_its_labels(
    host: Host, tmp_path: Path, compression: str
) -> None:
    tar = checkpoint_archive(noise(3 << 20, 5))
    packed = {"none": tar, "gzip": gzip.compress(tar),
              "zstd": zstandard.ZstdCompressor().compress(tar)}[compression]
    archive = tmp_path / KUBELET_NAME
    archive.write_bytes(packed)

    made = host.json("import", "shop.counters.counter", "cp1", str(archive), "--label", "tier=web")

    assert made["engine"] == "crio"  # spec.dump: io.container.manager=cri-o
    assert made["labels"] == {
        "source": "cri-o", "container": "counter", "pod": "counters", "namespace": "shop",
        "image": "quay.io/example/counter:1", "checkpointed": "2026-01-02T03:14:15Z",
        "tier": "web",
    }
    assert made["stats"]["engine"]["compression"] == compression
    listed = host.json("ls", "--label", "namespace=shop", "--label", "pod=counters")
    assert [c["name"] for c in listed] == ["cp1"]
    out = tmp_path / "out.tar"
    host.cli("export", "shop.counters.counter", "--latest", "--label", "container=counter",
             "-o", str(out), "--compress", "none")
    assert out.read_bytes() == tar  # the very same tar
    code, raw, err = cli_bytes(host, "export", "shop.counters.counter", "cp1")  # to stdout
    assert code == 0, err  # compressed as imported
    plain = {"none": raw, "gzip": gzip.decompress(raw) if compression == "gzip" else raw,
             "zstd": zstandard.ZstdDecompressor().decompress(raw, max_output_size=1 << 30)
             if compression == "zstd" else raw}[compression]
    assert plain == tar
    assert not list(tmp_path.glob("*.partial"))
    assert host.scratch_entries() == []


def test_stdin_import_and_a_small_change_stores_little(host: Host, tmp_path: Path) -> None:
    pages = bytearray(noise(16 << 20, 6))
    first = checkpoint_archive(bytes(pages))
    pages[9 << 20 : (9 << 20) + 4096] = noise(4096, 7)  # one page of memory changed
    config = {**CONFIG, "checkpointedTime": "2026-01-02T03:20:00Z"}
    second = checkpoint_archive(bytes(pages), config)

    code, out, err = import_stdin(host, zstandard.ZstdCompressor().compress(first),
                                  "pod1", "cp1", "--json")
    assert code == 0, err
    one = json.loads(out)
    code, out, err = import_stdin(host, gzip.compress(second), "pod1", "cp2", "--json")
    assert code == 0, err
    two = json.loads(out)

    assert one["stats"]["engine"]["imported"] == "-"
    ratio = two["stats"]["bytes_stored"] / one["stats"]["bytes_stored"]
    assert ratio <= 0.15, (one["stats"]["bytes_stored"], two["stats"]["bytes_stored"])
    assert two["labels"]["checkpointed"] == "2026-01-02T03:20:00Z"
    assert host.json("inspect", "pod1", "--latest")["name"] == "cp2"
    for name, original in (("cp1", first), ("cp2", second)):
        dest = tmp_path / f"{name}.tar"
        host.cli("export", "pod1", name, "-o", str(dest), "--compress", "none")
        assert members_digests(dest.read_bytes()) == members_digests(original)
        assert dest.read_bytes() == original
    # The rebuilt archive is a tar that tar itself reads.
    listing = run(["tar", "tf", str(tmp_path / "cp2.tar")]).stdout.split()
    assert "checkpoint/pages-1.img" in listing
    # Retention applies to imported checkpoints as to any.
    code, _, err = import_stdin(host, first, "pod1", "cp3", "--keep-last", "2")
    assert code == 0 and "pruned pod1 cp1" in err, err
    assert [c["name"] for c in host.json("ls", "pod1")] == ["cp2", "cp3"]
    assert os.listdir(host.scratch) == []
