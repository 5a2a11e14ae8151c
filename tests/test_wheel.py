"""The built wheel installs into a fresh virtual environment and works there; the wheel and
the source distribution carry the license and the metadata, and the source distribution
everything the README's set-up runs (issue 25, row 15)."""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
import tarfile
import venv
import zipfile
from email.parser import Parser
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
#: SHA-256 of the Apache License 2.0 text (https://www.apache.org/licenses/LICENSE-2.0.txt).
APACHE_2_SHA256 = "cfc7749b96f63bd31c3c42b5c471bf756814053e847c10f3eb003417bc523d30"


@pytest.mark.slow
def test_wheel_in_a_fresh_venv_migrates_lists_and_has_version_completion_and_man_page(
    tmp_path: Path,
) -> None:
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", str(tmp_path), str(REPO)],
        check=True, capture_output=True,
    )
    (wheel,) = tmp_path.glob("cryostash-*.whl")
    env_dir = tmp_path / "venv"
    venv.EnvBuilder(with_pip=True).create(env_dir)
    pip = subprocess.run(
        [str(env_dir / "bin" / "python"), "-m", "pip", "install", "-q", str(wheel)],
        capture_output=True, text=True,
    )
    assert pip.returncode == 0, pip.stderr
    env = {
        k: v for k, v in os.environ.items() if not k.startswith(("CRYOSTASH_", "PYTHONPATH"))
    }
    env.update(
        CRYOSTASH_CATALOG=f"sqlite:///{tmp_path / 'fresh.db'}",
        CRYOSTASH_STORE=str(tmp_path / "store"),
        CRYOSTASH_CONFIG=os.devnull,
    )
    cli = str(env_dir / "bin" / "cryostash")

    def run(*args: str) -> str:
        done = subprocess.run([cli, *args], capture_output=True, text=True, env=env, cwd=tmp_path)
        assert done.returncode == 0, (args, done.stderr)
        return done.stdout

    assert run("db", "upgrade").split() == ["0003"]
    assert run("db", "current").split()[0] == "0003"
    run("store", "init")  # a store named but never created is an error to read
    assert run("ls").splitlines() == ["CONTAINER   CHECKPOINT NAME"]
    versions = run("--version").splitlines()
    assert versions[0] == "cryostash 0.1.0" and versions[2] == "catalog schema 0003", versions
    assert run("completion", "bash").count("_shtab_cryostash") > 1
    assert run("completion", "fish").startswith("# fish completion for cryostash")
    page = env_dir / "share" / "man" / "man1" / "cryostash.1"
    assert page.read_text() == (REPO / "man" / "cryostash.1").read_text()
    where = subprocess.run(
        [str(env_dir / "bin" / "python"), "-c", "import cryostash; print(cryostash.__file__)"],
        capture_output=True, text=True, env=env, cwd=tmp_path, check=True,
    ).stdout
    assert where.startswith(str(env_dir)), "the test must exercise the installed wheel"


@pytest.mark.slow
def test_row_15_the_wheel_and_the_sdist_ship_the_license_the_metadata_and_the_set_up(
    tmp_path: Path,
) -> None:
    """``python -m build`` (the wheel built from the sdist): LICENSE, the full Apache 2.0
    text, in both; SPDX ``License-Expression``, classifiers, keywords and the ``all``
    extra in the metadata; the sdist holds the Makefile, scripts/ and .ci/ (``make -n
    demo`` and ``make -n test`` resolve in it) and leaves out bench results."""
    assert hashlib.sha256((REPO / "LICENSE").read_bytes()).hexdigest() == APACHE_2_SHA256
    subprocess.run(
        [sys.executable, "-m", "build", "--outdir", str(tmp_path / "dist"), str(REPO)],
        check=True, capture_output=True,
    )
    (wheel,) = (tmp_path / "dist").glob("cryostash-*.whl")
    (sdist,) = (tmp_path / "dist").glob("cryostash-*.tar.gz")

    with zipfile.ZipFile(wheel) as whl:
        info = next(n for n in whl.namelist() if n.endswith(".dist-info/METADATA"))
        dist_info = info.rpartition("/")[0]
        assert whl.read(f"{dist_info}/licenses/LICENSE") == (REPO / "LICENSE").read_bytes()
        metadata = Parser().parsestr(whl.read(info).decode())
    assert metadata["License-Expression"] == "Apache-2.0"
    assert metadata.get_all("License-File") == ["LICENSE"]
    assert metadata["License"] is None  # no legacy free-text license
    classifiers = metadata.get_all("Classifier") or []
    assert "Operating System :: POSIX :: Linux" in classifiers
    assert "Programming Language :: Python :: 3.11" in classifiers
    assert "criu" in (metadata["Keywords"] or "").split(",")
    assert "all" in (metadata.get_all("Provides-Extra") or [])
    requires = [r.replace('"', "'") for r in metadata.get_all("Requires-Dist") or []]
    all_extra = sorted(r.split(";")[0] for r in requires if r.endswith("extra == 'all'"))
    assert all_extra == [  # s3 + postgres + daemon
        "aiohttp>=3.9", "prometheus-client>=0.17", "psycopg[binary]>=3.1", "s3fs>=2024.6.0"
    ], requires
    assert metadata.get_all("Project-URL") is None  # no public address to name yet

    with tarfile.open(sdist) as tar:
        names = set(tar.getnames())
        root = next(iter(names)).split("/")[0]
        tar.extractall(tmp_path / "sdist", filter="data")
    unpacked = tmp_path / "sdist" / root
    for needed in ("LICENSE", "Makefile", "scripts/install-runtimes", ".ci/run",
                   "pyproject.toml", "README.md", "examples/quickstart.py",
                   "src/cryostash/install/criu.py", "tests/conftest.py"):
        assert f"{root}/{needed}" in names, needed
    assert (unpacked / "LICENSE").read_bytes() == (REPO / "LICENSE").read_bytes()
    assert not any(n.startswith(f"{root}/bench/results/") for n in names)
    assert os.access(unpacked / "scripts" / "install-runtimes", os.X_OK)
    assert os.access(unpacked / ".ci" / "run", os.X_OK)
    pkg_info = Parser().parsestr((unpacked / "PKG-INFO").read_text())
    assert pkg_info["License-Expression"] == "Apache-2.0"
    for goal in ("demo", "test"):
        dry = subprocess.run(["make", "-n", goal], cwd=unpacked, capture_output=True, text=True)
        assert dry.returncode == 0, (goal, dry.stderr)
