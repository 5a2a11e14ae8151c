"""Shared pytest fixtures."""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support import postgres
from tests.support.cli import Host
from tests.support.container_rigs import (
    dockerd_fixture,
    podman_host_fixture,
    runc_rootfs_fixture,
)
from tests.support.engine_rigs import engine_rig_fixture, toy_plugin_fixture
from tests.support.processes import ProcessTracker
from tests.support.requirements import missing
from tests.support.stores import (
    backend_fixture,
    moto_endpoint_fixture,
    moto_server_fixture,
)

# Fixtures defined elsewhere, registered here (pytest finds them by their names).
__all__ = [
    "backend_fixture",
    "dockerd_fixture",
    "engine_rig_fixture",
    "moto_endpoint_fixture",
    "moto_server_fixture",
    "podman_host_fixture",
    "runc_rootfs_fixture",
    "toy_plugin_fixture",
]

# --- CRIU and real processes (engines) ------------------------------------------------


@pytest.fixture(scope="session")
def criu_path() -> str:
    """Path of a working CRIU >= 4.2 (``criu check`` passes); needs root.

    Never provisions: ``.ci/run`` runs ``python -m cryostash.install.criu``
    first. Missing CRIU or root skips the test locally and fails it in CI.
    """
    if os.geteuid() != 0:
        missing("CRIU", "checkpoint/restore tests need root")
    from cryostash.engines.criu import CriuEngine

    availability = CriuEngine().available()
    if not availability.ok or availability.path is None:
        missing("CRIU", availability.reason or "not available")
    return availability.path


@pytest.fixture(scope="session")
def lazy_criu(criu_path: str) -> str:
    """CRIU that can restore lazily here: userfaultfd (``criu check --feature
    uffd-noncoop``) and /dev/fuse; else skipped locally, failed in CI."""
    done = subprocess.run(
        [criu_path, "check", "--feature", "uffd-noncoop"], capture_output=True, text=True,
        check=False, timeout=60,
    )
    if done.returncode != 0:
        missing("userfaultfd", done.stdout + done.stderr)
    if not Path("/dev/fuse").exists():
        missing("FUSE", "/dev/fuse does not exist")
    return criu_path


@pytest.fixture
def procs() -> Iterator[ProcessTracker]:
    """Start (or track) detached test processes; every one is killed when the test ends."""
    tracker = ProcessTracker()
    try:
        yield tracker
    finally:
        tracker.kill_all()


@pytest.fixture
def cli(tmp_path: Path, criu_path: str) -> Host:
    """``cryostash`` run as a user on host ``host-a`` would (a new process per command),
    with CRIU, on the test's own local store, SQLite catalog and scratch folder under
    ``tmp_path/cs``; ``cli(ARGS)``, ``cli.json(ARGS)``, ``cli.home``."""
    return Host(tmp_path / "cs", "host-a", {"CRYOSTASH_CRIU": criu_path})


# --- end of CRIU section ----------------------------------------------------------------


# --- S3 (one moto server per session) and PostgreSQL (one private cluster per session) ---
# Registered here, once: a test module must not import these fixtures (a module-level
# copy of a session fixture is a second instance). ``backend`` runs a test on every
# store backend (memory, local, S3).


@pytest.fixture(scope="session")
def pg_server() -> Iterator[postgres.PostgresServer]:
    """The session's PostgreSQL server (a private cluster), stopped when the session ends."""
    yield from postgres.session_server()
