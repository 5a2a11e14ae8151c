"""``cryostash import`` of an archive built to exhaust memory or disk is refused early.

Each case runs the CLI as a process under a 1 GiB address-space limit and checks exit 7,
a message naming the limit, and that nothing is left (no scratch, no catalog row, no
stored object): 30,000 tiny members, a 16 MiB pax header, a gzip bomb (256 MiB of
zeros in 250 KiB), ``/dev/zero`` read as the archive (plain and from stdin), a member path of
over 4 KB made of short parts, and an archive larger than the room in scratch.
The limits are those of :mod:`cryostash.engines.archive_bounds` (docs/security.md).
"""

from __future__ import annotations

import gzip
import io
import resource
import subprocess
import sys
import tarfile
import time
from pathlib import Path

import pytest

from cryostash.engines.archive_bounds import MAX_MEMBERS, MAX_META, MAX_PATH, MAX_RATIO
from tests.support.cli import Host, assert_nothing_left

#: Address space of one import (a bounded import needs far less).
MEMORY_LIMIT = 1 << 30


@pytest.fixture
def host(tmp_path: Path) -> Host:
    return Host(tmp_path / "cs", "node-1")


def _limited() -> None:
    resource.setrlimit(resource.RLIMIT_AS, (MEMORY_LIMIT, MEMORY_LIMIT))


def _import(host: Host, archive: str, stdin: bytes | None = None) -> tuple[int, str, float]:
    started = time.monotonic()
    done = subprocess.run(
        [sys.executable, "-m", "cryostash", "import", "ctr", "cp1", archive],
        input=stdin, capture_output=True, env=host.env(), timeout=120, check=False,
        preexec_fn=_limited,
    )
    return done.returncode, done.stderr.decode(), time.monotonic() - started


def _tar(members: list[tuple[tarfile.TarInfo, bytes]], fmt: int = tarfile.PAX_FORMAT) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=fmt) as tar:
        for info, data in members:
            tar.addfile(info, io.BytesIO(data))
    return buf.getvalue()


def _file(name: str, data: bytes = b"") -> tuple[tarfile.TarInfo, bytes]:
    info = tarfile.TarInfo(name)
    info.size = len(data)
    return info, data


def _many_members() -> bytes:
    return _tar([_file(f"m{i}") for i in range(MAX_MEMBERS + 10_000)], tarfile.USTAR_FORMAT)


def _huge_pax() -> bytes:
    info, data = _file("config.dump", b"{}")
    info.pax_headers = {"comment": "x" * (16 << 20)}
    return _tar([(info, data)])


def _gzip_bomb() -> bytes:
    """A member of 256 MiB of zeros, gzipped to about 250 KiB."""
    info = tarfile.TarInfo("checkpoint/pages-1.img")
    info.size = 256 << 20
    out = io.BytesIO()
    with gzip.GzipFile(fileobj=out, mode="wb", compresslevel=6) as gz:
        gz.write(info.tobuf(tarfile.PAX_FORMAT))
        block = bytes(1 << 20)
        for _ in range(256):
            gz.write(block)
        gz.write(bytes(1024))
    return out.getvalue()


def _long_path() -> bytes:
    name = "/".join(["abcdefgh"] * 500)  # 4,499 bytes in 9-byte parts
    return _tar([_file(name, b"x")])


CASES = {
    "members": (_many_members, f"more than {MAX_MEMBERS} members"),
    "pax-header": (_huge_pax, f"over the {MAX_META}-byte limit"),
    "gzip-bomb": (_gzip_bomb, f"expands more than {MAX_RATIO} times"),
    "long-path": (_long_path, f"has a path longer than {MAX_PATH} bytes"),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_an_archive_past_a_limit_is_refused_and_nothing_is_left(
    host: Host, tmp_path: Path, case: str
) -> None:
    build, message = CASES[case]
    archive = tmp_path / "a.tar"
    archive.write_bytes(build())

    code, err, took = _import(host, str(archive))

    assert code == 7, err
    assert message in err and "Traceback" not in err
    assert err.count("\n") == 1  # one line: a member name cannot spill over the terminal
    assert took < 60
    assert_nothing_left(host)


@pytest.mark.parametrize("source", ["file", "stdin"])
def test_dev_zero_as_the_archive_is_refused_after_a_mebibyte(host: Host, source: str) -> None:
    if source == "file":
        code, err, _ = _import(host, "/dev/zero")
    else:
        with open("/dev/zero", "rb") as zeros:
            done = subprocess.run(
                [sys.executable, "-m", "cryostash", "import", "ctr", "cp1", "-"],
                stdin=zeros, capture_output=True, env=host.env(), timeout=120, check=False,
                preexec_fn=_limited,
            )
        code, err = done.returncode, done.stderr.decode()

    assert code == 7, err
    assert f"over {MAX_META} bytes after the end of the tar archive" in err
    assert_nothing_left(host)


def test_an_archive_larger_than_the_room_in_scratch_is_refused_before_filling_it(
    host: Host, tmp_path: Path
) -> None:
    """A 64 MiB tmpfs as scratch: a 100 MiB member (zstd, in a small file) does not fit."""
    mount = tmp_path / "small"
    mount.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64m", "tmpfs", str(mount)], check=True)
    try:
        host.env_extra["CRYOSTASH_SCRATCH"] = str(mount / "scratch")
        import zstandard

        big = _tar([_file("checkpoint/pages-1.img", b"\x01" * (100 << 20))])
        archive = tmp_path / "big.tar.zst"
        archive.write_bytes(zstandard.ZstdCompressor(level=3).compress(big))
        del big

        code, err, _ = _import(host, str(archive))

        assert code == 7, err
        assert "once decompressed (the room in scratch)" in err
        scratch = mount / "scratch"
        assert not scratch.exists() or list(scratch.iterdir()) == []
        assert_nothing_left(host)
    finally:
        subprocess.run(["umount", str(mount)], check=True)


def test_the_walk_agrees_with_tarfile_on_real_archives() -> None:
    """An archive tarfile reads (pax, GNU long names, folders) passes the walk whole,
    fed in odd-sized pieces."""
    from cryostash.engines.archive_bounds import TarBounds

    long_name = "d/" + "n" * 300
    members = [_file("config.dump", b"{}"), _file(long_name, b"y" * 1000)]
    folder = tarfile.TarInfo("checkpoint")
    folder.type = tarfile.DIRTYPE
    members.append((folder, b""))
    for fmt in (tarfile.PAX_FORMAT, tarfile.GNU_FORMAT):
        data = _tar(members, fmt)
        bounds = TarBounds("t", 1 << 30)
        for at in range(0, len(data), 777):
            bounds.feed(data[at : at + 777], len(data))
        assert bounds.members == 3
