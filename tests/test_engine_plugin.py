"""A third-party engine, installed as a real package, used through the CLI.

The package (a ``pyproject.toml`` declaring an entry point in the ``cryostash.engines``
group, and one module) is built and installed by pip into a folder of the test's own
(``pip install --target``), which the CLI process gets on ``PYTHONPATH``: the shared
virtual environment is never modified, so there is nothing to uninstall and concurrent
test runs cannot see it. pip builds it as it builds any package (an isolated build
environment with hatchling, the backend cryostash itself uses, from PyPI or pip's cache,
like ``test_wheel.py``).

The toy engine "checkpoints" a state file ``$TOY_ROOT/<locator>.txt`` (gone after a dump
without ``--leave-running``) and restores it under the recorded name or ``--as``.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from tests.support.containers import Host, assert_nothing_left

PYPROJECT = """\
[build-system]
requires = ["hatchling>=1.21"]
build-backend = "hatchling.build"

[project]
name = "cryostash-toy-engine"
version = "0.1"

[project.entry-points."cryostash.engines"]
toy = "cryostash_toy:ToyEngine"

[tool.hatch.build.targets.wheel]
only-include = ["cryostash_toy.py"]
"""

MODULE = '''\
"""A toy cryostash engine: the "process" is a state file $TOY_ROOT/<locator>.txt."""
import json, os, time
from pathlib import Path

from cryostash.errors import EngineError, UsageError
from cryostash.types import Availability, DumpStats, RestoreResult


class ToyEngine:
    name = "toy"

    def _root(self):
        return Path(os.environ["TOY_ROOT"])

    def available(self):
        if "TOY_ROOT" not in os.environ:
            return Availability(ok=False, reason="TOY_ROOT is not set")
        return Availability(ok=True, version="0.1", path=str(self._root()))

    def dump(self, locator, image_dir, options):
        source = self._root() / f"{locator}.txt"
        if not source.exists():
            raise UsageError(f"no toy process {locator!r}")
        if source.read_text().startswith("unfreezable"):
            (image_dir / "partial.img").write_text("half")
            raise EngineError("toy dump failed: the process cannot be frozen")
        (image_dir / "state.img").write_bytes(source.read_bytes())
        (image_dir / "toy.json").write_text(json.dumps({"locator": locator}))
        if not options.leave_running:
            source.unlink()
        return DumpStats(duration_s=0.001, engine_version="0.1", details={"toy": True})

    def restore(self, image_dir, options):
        name = options.container or json.loads((image_dir / "toy.json").read_text())["locator"]
        target = self._root() / f"{name}.txt"
        if target.exists():
            raise EngineError(f"toy process {name!r} is running")
        target.write_bytes((image_dir / "state.img").read_bytes())
        return RestoreResult(pid=4242, duration_s=0.001, details={"container": name})
'''


@pytest.fixture(scope="module")
def plugin_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The toy engine package, built and installed into a private folder."""
    base = tmp_path_factory.mktemp("toy-engine")
    src = base / "src"
    src.mkdir()
    (src / "pyproject.toml").write_text(PYPROJECT)
    (src / "cryostash_toy.py").write_text(textwrap.dedent(MODULE))
    target = base / "site"
    done = subprocess.run(
        [sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--target", str(target),
         str(src)],
        capture_output=True, text=True, timeout=300, check=False,
    )
    assert done.returncode == 0, done.stderr
    assert list(target.glob("cryostash_toy_engine-0.1.dist-info/entry_points.txt"))
    return target


@pytest.fixture
def toy_host(plugin_path: Path, tmp_path: Path) -> Host:
    root = tmp_path / "toy"
    root.mkdir()
    python_path = os.pathsep.join(filter(None, [str(plugin_path), os.environ.get("PYTHONPATH")]))
    return Host(tmp_path / "cs", "host-a", {"PYTHONPATH": python_path, "TOY_ROOT": str(root)})


def test_third_party_engine_checkpoints_and_restores_through_the_cli(toy_host: Host) -> None:
    root = Path(toy_host.env_extra["TOY_ROOT"])
    (root / "app.txt").write_text("state 7")

    made = toy_host.json("create", "app", "cp1", "--engine", "toy")  # locator: TARGET

    assert isinstance(made, dict) and made["engine"] == "toy"
    assert not (root / "app.txt").exists()
    assert [c["engine"] for c in toy_host.json("ls")] == ["toy"]
    restored = toy_host.json("restore", "app", "cp1")  # the recorded engine
    assert isinstance(restored, dict)
    assert (restored["pid"], restored["container"]) == (4242, "app")
    assert (root / "app.txt").read_text() == "state 7"
    toy_host.cli("restore", "app", "cp1", "--as", "copy")
    assert (root / "copy.txt").read_text() == "state 7"

    doctor = json.loads(toy_host.cli("doctor", "--json", check=False).stdout)
    toy = next(c for c in doctor["checks"] if c["name"] == "toy")
    assert toy["ok"] is True and toy["version"] == "0.1" and toy["optional"] is True


def test_third_party_engine_failure_leaves_nothing(toy_host: Host) -> None:
    root = Path(toy_host.env_extra["TOY_ROOT"])
    (root / "stuck.txt").write_text("unfreezable")

    done = toy_host.cli("create", "stuck", "cp", "--engine", "toy", check=False)

    assert done.returncode == 5, done.stderr
    assert "Cannot checkpoint container stuck: toy dump failed" in done.stderr
    assert_nothing_left(toy_host)
    assert (root / "stuck.txt").exists()


def test_unknown_engine_lists_the_installed_ones(toy_host: Host) -> None:
    done = toy_host.cli("create", "app", "cp", "--engine", "nope", check=False)
    assert done.returncode == 2
    assert "unknown engine 'nope' (available: criu, docker, podman, runc, toy)" in done.stderr
