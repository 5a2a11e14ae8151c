"""What only a third-party engine shows: installed as a real package (``tests/support/
toy_engine``, built by pip into a private folder and given to the CLI on ``PYTHONPATH``:
the shared virtual environment is never modified), ``doctor`` lists it as an optional
check, and an unknown engine's error lists the installed ones. The scenarios every
engine shares (create, restore under the recorded engine and ``--as``, a failed dump
leaves nothing...) run on it in ``test_engine_conformance.py`` (engine ``toy``).
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.support.engine_rigs import ToyRig


@pytest.fixture
def toy(toy_plugin: Path, tmp_path: Path) -> ToyRig:
    return ToyRig(tmp_path / "cs", tmp_path / "work", toy_plugin)


def test_doctor_lists_the_third_party_engine_as_optional(toy: ToyRig) -> None:
    doctor = json.loads(toy.host_a.cli("doctor", "--json", check=False).stdout)
    check = next(c for c in doctor["checks"] if c["name"] == "toy")
    assert check["ok"] is True and check["version"] == "0.1" and check["optional"] is True


def test_unknown_engine_lists_the_installed_ones(toy: ToyRig) -> None:
    done = toy.host_a.cli("create", "app", "cp", "--engine", "nope", check=False)
    assert done.returncode == 2
    assert "unknown engine 'nope' (available: criu, docker, podman, runc, toy)" in done.stderr
