"""CRIU provisioning: idempotent, verified, and loud when it cannot deliver CRIU >= 4.2."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from cryostash.engines.criu_binary import (
    DEFAULT_PREFIX,
    criu_check,
    criu_version,
    default_prefix,
    is_recent,
    prefix_criu_path,
)
from cryostash.errors import EngineError
from cryostash.install import debian as criu_debian
from cryostash.install.criu import ProvisionResult, provision
from tests.support.requirements import missing

# --- no root, no network ------------------------------------------------------------------


def test_prefix_layout() -> None:
    assert prefix_criu_path(Path("/x/criu")) == Path("/x/criu/bin/criu")
    if os.geteuid() == 0:
        assert default_prefix() == DEFAULT_PREFIX == Path("/opt/cryostash/criu")
    else:
        assert default_prefix().name == "criu"


def test_system_packages_follow_the_t64_rename() -> None:
    assert "libgnutls30" in criu_debian.system_packages(12)
    assert "libgnutls30t64" in criu_debian.system_packages(13)
    assert "libgnutls30t64" in criu_debian.system_packages(None)
    for major in (12, 13):
        assert {"libbsd0", "libnftables1", "libprotobuf-c1", "libuuid1"} <= set(
            criu_debian.system_packages(major)
        )


def test_private_apt_configuration_names_only_forky(tmp_path: Path) -> None:
    env = criu_debian.private_apt(tmp_path, "http://mirror.example/debian")
    conf = Path(env["APT_CONFIG"])
    assert conf.is_relative_to(tmp_path)
    sources = (tmp_path / "apt" / "sources.list").read_text()
    assert sources == (
        "deb [signed-by=/usr/share/keyrings/debian-archive-keyring.gpg] "
        "http://mirror.example/debian forky main\n"
    )
    text = conf.read_text()
    for key in ("Dir::State::Lists", "Dir::State::status", "Dir::Cache", "Dir::Etc::SourceList"):
        assert f'{key} "{tmp_path}' in text  # nothing of the system's apt state is used


# --- as root, against the real machine ------------------------------------------------


@pytest.fixture
def root() -> None:
    if os.geteuid() != 0:
        missing("CRIU provisioning", "needs root")
    if shutil.which("apt-get") is None:
        missing("CRIU provisioning", "needs Debian's apt-get")


def _assert_works(result: ProvisionResult) -> None:
    assert is_recent(result.version)
    assert criu_version(str(result.path)) == result.version
    passed, output = criu_check(str(result.path))
    assert passed, output
    assert result.checked


@pytest.mark.criu
@pytest.mark.usefixtures("root")
def test_provision_is_idempotent_on_the_default_prefix() -> None:
    try:
        first = provision()  # .ci/run provisioned already: normally no download here
    except EngineError as exc:
        missing("CRIU provisioning", str(exc))
    second = provision()

    assert second.downloaded is False
    assert second.path == first.path and second.version == first.version
    assert second.source == first.source
    _assert_works(second)
    if second.source == "prefix":
        assert second.path == prefix_criu_path(DEFAULT_PREFIX)
        assert (DEFAULT_PREFIX / "VERSION").read_text().strip() == second.version
        assert second.packages["criu"].startswith(second.version)
        assert set(second.packages) == set(criu_debian.PREFIX_PACKAGES)
    # CRIU's image reader is in the prefix whichever CRIU is used, recorded
    assert second.pycriu is not None and second.pycriu == first.pycriu
    reader = json.loads((DEFAULT_PREFIX / "pycriu.json").read_text())
    assert reader["package"] == "python3-pycriu" and reader["version"] == second.pycriu
    assert (DEFAULT_PREFIX / "pycriu" / "pycriu" / "images").is_dir()


@pytest.mark.criu
@pytest.mark.usefixtures("root")
def test_unreachable_mirror_fails_clearly_and_leaves_nothing_half_done(tmp_path: Path) -> None:
    prefix = tmp_path / "criu"
    with pytest.raises(EngineError, match="apt-get update of Debian forky failed"):
        provision(prefix, force=True, mirror="file:///nonexistent/debian")
    assert not prefix_criu_path(prefix).exists()
    assert not (prefix / "provision.json").exists()
    assert not (prefix / ".stage").exists()


@pytest.mark.criu
@pytest.mark.slow
@pytest.mark.usefixtures("root")
def test_fresh_prefix_with_wrapper_then_reused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Downloads from Debian forky (a few seconds); without patchelf: the wrapper script."""
    which = shutil.which
    monkeypatch.setattr(
        shutil,
        "which",
        lambda name, *a, **k: None if name == "patchelf" else which(name, *a, **k),
    )
    prefix = tmp_path / "criu"
    try:
        fresh = provision(prefix, force=True)
    except EngineError as exc:
        missing("CRIU provisioning", f"download from Debian forky failed: {exc}")

    assert fresh.downloaded and fresh.source == "prefix" and fresh.method == "wrapper"
    assert fresh.path == prefix_criu_path(prefix)
    assert fresh.path.read_text().startswith("#!/bin/sh\nexec ")
    _assert_works(fresh)
    record = json.loads((prefix / "provision.json").read_text())
    assert record["version"] == fresh.version and record["suite"] == "forky"
    assert not (prefix / ".stage").exists()
    assert fresh.pycriu is not None and fresh.pycriu.startswith(fresh.version)
    assert json.loads((prefix / "pycriu.json").read_text())["version"] == fresh.pycriu
    assert (prefix / "pycriu" / "pycriu" / "images" / "pstree_pb2.py").is_file()

    again = subprocess.run(
        [
            sys.executable,
            "-m",
            "cryostash.install.criu",
            "--prefix",
            str(prefix),
            "--json",
        ],
        capture_output=True,
        text=True,
        check=True,
    )
    reused = json.loads(again.stdout)
    assert reused["downloaded"] is False and reused["version"] == fresh.version
    assert reused["path"] == str(fresh.path)
    assert reused["pycriu"] == fresh.pycriu
