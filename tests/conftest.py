"""Shared pytest fixtures."""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest

from tests.support.processes import ProcessTracker
from tests.support.requirements import missing

# --- CRIU and real processes (engines) ------------------------------------------------


@pytest.fixture(scope="session")
def criu_path() -> str:
    """Path of a working CRIU >= 4.2 (``criu check`` passes); needs root.

    Never provisions: ``.ci/run`` runs ``python -m cryostash.engines.criu_provision``
    first. Missing CRIU or root skips the test locally and fails it in CI.
    """
    if os.geteuid() != 0:
        missing("CRIU", "checkpoint/restore tests need root")
    from cryostash.engines.criu import CriuEngine

    availability = CriuEngine().available()
    if not availability.ok or availability.path is None:
        missing("CRIU", availability.reason or "not available")
    return availability.path


@pytest.fixture
def procs() -> Iterator[ProcessTracker]:
    """Start (or track) detached test processes; every one is killed when the test ends."""
    tracker = ProcessTracker()
    try:
        yield tracker
    finally:
        tracker.kill_all()


# --- end of CRIU section ----------------------------------------------------------------
