"""Run the real ``cryostash`` command (``python -m cryostash``) as separate processes,
each standing for a host, and look at what they left behind.

- :func:`base_env`: the test process's environment without any ``CRYOSTASH_*`` or
  ``AWS_*`` variable, and without AWS configuration files: each test states exactly
  what a host is given.
- :func:`run`: one command, waited for with a deadline (a hung command fails the test).
- :func:`start_at_barrier`: a command that waits for a start file (to start many
  together); :data:`BARRIER` is the launcher.
- :func:`catalog_rows`: every row of every table of a catalog, read with SQLAlchemy
  behind cryostash's back.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

BARRIER = Path(__file__).resolve().parent / "cli_barrier.py"
#: Deadline of one command (an unreachable store must fail well within it).
TIMEOUT_S = 180.0


def base_env(**extra: str) -> dict[str, str]:
    """``os.environ`` without ``CRYOSTASH_*``/``AWS_*`` (no AWS config files, no instance
    metadata lookups), plus ``extra``."""
    env = {
        k: v for k, v in os.environ.items() if not k.startswith(("CRYOSTASH_", "AWS_"))
    }
    env["AWS_CONFIG_FILE"] = os.devnull
    env["AWS_SHARED_CREDENTIALS_FILE"] = os.devnull
    env["AWS_EC2_METADATA_DISABLED"] = "true"  # no credential lookup on the network
    env["CRYOSTASH_CONFIG"] = os.devnull
    env.update(extra)
    return env


def home_env(home: Path, criu_path: str) -> dict[str, str]:
    """The ``CRYOSTASH_*`` variables of a host whose store, SQLite catalog and scratch are
    in ``home`` (``host-a``, ``criu_path``, no config file)."""
    return {
        "CRYOSTASH_STORE": str(home / "store"),
        "CRYOSTASH_CATALOG": f"sqlite:///{home / 'catalog.db'}",
        "CRYOSTASH_SCRATCH": str(home / "scratch"),
        "CRYOSTASH_HOST": "host-a",
        "CRYOSTASH_CRIU": criu_path,
        "CRYOSTASH_CONFIG": os.devnull,
    }


def run(
    args: list[str], env: Mapping[str, str], *, check: bool = True, timeout: float = TIMEOUT_S
) -> subprocess.CompletedProcess[str]:
    """``python -m cryostash ARGS`` with ``env``; raise if it fails and ``check``."""
    done = subprocess.run(
        [sys.executable, "-m", "cryostash", *args],
        capture_output=True,
        text=True,
        env=dict(env),
        timeout=timeout,
        check=False,
    )
    if check and done.returncode != 0:
        raise AssertionError(
            f"cryostash {' '.join(args)} exited {done.returncode}:\n{done.stderr}"
        )
    return done


def start_at_barrier(
    args: list[str], env: Mapping[str, str], ready: Path, go: Path
) -> subprocess.Popen[str]:
    """Start ``cryostash ARGS``: it imports what it needs, creates ``ready``, waits for
    ``go`` to exist, then runs (exactly as ``python -m cryostash ARGS`` would)."""
    return subprocess.Popen(
        [sys.executable, str(BARRIER), str(ready), str(go), *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=dict(env),
    )


def catalog_rows(url: str) -> dict[str, list[dict[str, Any]]]:
    """Every row of every table of the catalog at ``url`` (SQLite or PostgreSQL)."""
    from sqlalchemy import MetaData, create_engine, select

    engine = create_engine(url)
    try:
        meta = MetaData()
        meta.reflect(engine)
        with engine.connect() as conn:
            return {
                name: [dict(row._mapping) for row in conn.execute(select(table))]
                for name, table in meta.tables.items()
            }
    finally:
        engine.dispose()
