"""The built wheel installs into a fresh virtual environment and works there."""

from __future__ import annotations

import os
import subprocess
import sys
import venv
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent


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
        CRYOSTASH_CONFIG=str(tmp_path / "none.toml"),
    )
    cli = str(env_dir / "bin" / "cryostash")

    def run(*args: str) -> str:
        done = subprocess.run([cli, *args], capture_output=True, text=True, env=env, cwd=tmp_path)
        assert done.returncode == 0, (args, done.stderr)
        return done.stdout

    assert run("db", "upgrade").split() == ["0003"]
    assert run("db", "current").split()[0] == "0003"
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
