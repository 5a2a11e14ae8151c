"""``export -o FILE`` writes only a new or a regular file, never through a link: a
symbolic link, folder, FIFO or device at FILE is refused with exit 2 and left as it was;
a link planted at the old temporary name (``FILE.partial``) is not followed; the file is
0600 under umask 022 (it holds process memory); ``-o -`` is stdout. The checkpoint is a
podman one stored with the fake engine (its ``checkpoint.tar`` is any bytes here)."""

from __future__ import annotations

import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from tests.support.cli import run
from tests.support.fake_engine import FakeEngine, FakeManager
from tests.support.setups import make_setup


class FakePodman(FakeEngine):
    """The fake engine under the name ``podman`` (export takes only podman checkpoints)."""

    name = "podman"


TAR = b"not really a tar, but the bytes podman exported" * 1000


@pytest.fixture
def env(tmp_path: Path) -> dict[str, str]:
    setup = make_setup("local-sqlite", tmp_path / "cs")
    image = tmp_path / "image"
    image.mkdir()
    (image / "checkpoint.tar").write_bytes(TAR)
    with setup.manager(FakeManager) as mgr:
        mgr.create("pod", "cp1", locator=str(image), engine=FakePodman())
    return setup.cli_env()


def export(env: dict[str, str], out: Path | str) -> subprocess.CompletedProcess[str]:
    return run(["export", "pod", "cp1", "-o", str(out), "--compress", "none"], env, check=False)


def test_the_file_is_0600_under_umask_022_and_replaces_a_regular_file(
    env: dict[str, str], tmp_path: Path
) -> None:
    out = tmp_path / "out" / "cp1.tar"
    out.parent.mkdir()
    out.write_bytes(b"an older export")
    old = os.umask(0o022)
    try:
        done = export(env, out)
    finally:
        os.umask(old)

    assert done.returncode == 0, done.stderr
    assert out.read_bytes() == TAR
    assert stat.S_IMODE(out.stat().st_mode) == 0o600
    assert os.listdir(out.parent) == ["cp1.tar"]  # no temporary file left


def plant_victim(folder: Path) -> Path:
    """A file another user's link could point cryostash at."""
    victim = folder / "victim"
    victim.write_bytes(b"root's file")
    return victim


def test_a_link_planted_at_the_partial_name_is_not_followed(
    env: dict[str, str], tmp_path: Path
) -> None:
    victim = plant_victim(tmp_path)
    out = tmp_path / "cp1.tar"
    (tmp_path / "cp1.tar.partial").symlink_to(victim)

    done = export(env, out)

    assert done.returncode == 0, done.stderr
    assert victim.read_bytes() == b"root's file"
    assert (tmp_path / "cp1.tar.partial").is_symlink()
    assert out.read_bytes() == TAR


def test_links_folders_fifos_and_devices_are_refused_and_left_alone(
    env: dict[str, str], tmp_path: Path
) -> None:
    victim = plant_victim(tmp_path)
    link = tmp_path / "link.tar"
    link.symlink_to(victim)
    fifo = tmp_path / "fifo.tar"
    os.mkfifo(fifo)
    folder = tmp_path / "folder.tar"
    folder.mkdir()

    for target, kind in ((link, "a symbolic link"), (fifo, "a FIFO"), (folder, "a folder"),
                         (Path("/dev/null"), "a character device")):
        done = export(env, target)
        assert done.returncode == 2, (target, done.stderr)
        assert f"it is {kind}" in done.stderr and "Traceback" not in done.stderr

    assert link.is_symlink() and victim.read_bytes() == b"root's file"
    assert stat.S_ISFIFO(os.lstat(fifo).st_mode)
    assert folder.is_dir() and os.listdir(folder) == []
    assert stat.S_ISCHR(os.lstat("/dev/null").st_mode)
    assert sorted(os.listdir(tmp_path)) == sorted(
        ["cs", "image", "victim", "link.tar", "fifo.tar", "folder.tar"]
    )


def test_dash_is_stdout(env: dict[str, str]) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "cryostash", "export", "pod", "cp1", "-o", "-",
         "--compress", "none"],
        env=env, capture_output=True, timeout=120, check=False,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout == TAR
