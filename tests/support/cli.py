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
- :func:`host_env`: the environment of one simulated host whose data live in one folder.
- :class:`Host`: ``cryostash`` run as one of several simulated hosts sharing a store and
  catalog (the ``cli`` fixture of ``tests/conftest.py`` is one); :func:`stored_files` and
  :func:`assert_nothing_left` look at what it left behind.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Mapping
from dataclasses import dataclass, field
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


def host_env(
    home: Path,
    *,
    host: str = "host-a",
    criu: str | None = None,
    store: bool = True,
    cache: str | None = None,
    chunk_size: str | None = None,
    **extra: str,
) -> dict[str, str]:
    """:func:`base_env` for one simulated host whose data live under ``home``.

    Args:
        home: the local store ``home/store`` (unless ``store`` is False: then the test
            names one in ``extra``), the SQLite catalog ``home/catalog.db``, the scratch
            folder ``home/scratch`` and the chunk cache ``home/cache``.
        host: the host name (``CRYOSTASH_HOST``).
        criu: the CRIU binary (``CRYOSTASH_CRIU``), when the host dumps or restores.
        cache: the chunk cache instead of ``home/cache`` (``"none"``: no cache).
        chunk_size: ``CRYOSTASH_CHUNK_SIZE``; None keeps cryostash's default.
        extra: further variables, applied last.
    """
    settings = {
        "CRYOSTASH_CATALOG": f"sqlite:///{home / 'catalog.db'}",
        "CRYOSTASH_SCRATCH": str(home / "scratch"),
        "CRYOSTASH_CACHE": cache or str(home / "cache"),
        "CRYOSTASH_HOST": host,
    }
    if store:
        settings["CRYOSTASH_STORE"] = str(home / "store")
    if criu is not None:
        settings["CRYOSTASH_CRIU"] = criu
    if chunk_size is not None:
        settings["CRYOSTASH_CHUNK_SIZE"] = chunk_size
    return base_env(**{**settings, **extra})


@dataclass
class Host:
    """One simulated host running the real ``cryostash`` command: its own scratch folder
    (``home/scratch-NAME``), chunk cache and host name, sharing ``home``'s store and
    catalog with the other hosts of the test. Calling it runs a command.

    Attributes:
        home: the folder of the shared store (``home/store``) and catalog.
        name: the host name.
        env_extra: further environment variables (``CRYOSTASH_CRIU``, ``DOCKER_HOST``...).
    """

    home: Path
    name: str
    env_extra: dict[str, str] = field(default_factory=dict)

    @property
    def scratch(self) -> Path:
        return self.home / f"scratch-{self.name}"

    def env(self) -> dict[str, str]:
        own = {
            "CRYOSTASH_SCRATCH": str(self.scratch),
            "CRYOSTASH_CACHE": str(self.home / f"cache-{self.name}"),
            **self.env_extra,
        }
        return host_env(self.home, host=self.name, **own)

    def cli(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        """Run ``cryostash ARGS`` as a user on this host would; raise if it fails and
        ``check``."""
        return run(list(args), self.env(), check=check)

    __call__ = cli

    def json(self, *args: str) -> Any:
        """``cryostash ARGS --json`` decoded."""
        return json.loads(self.cli(*args, "--json").stdout)

    def scratch_entries(self) -> list[str]:
        return sorted(p.name for p in self.scratch.iterdir()) if self.scratch.exists() else []


def scratch_entries(home: Path) -> list[str]:
    """What the scratch folder ``home/scratch`` of :func:`host_env` holds."""
    root = home / "scratch"
    return sorted(p.name for p in root.iterdir()) if root.exists() else []


def stored_files(home: Path) -> list[str]:
    """Every file in the store ``home/store`` (bypassing cryostash)."""
    root = home / "store"
    return sorted(str(p.relative_to(root)) for p in root.rglob("*") if p.is_file())


def assert_nothing_left(host: Host, ask_cli: bool = True) -> None:
    """No scratch folder, no stored object, no catalog row (pending or committed); and,
    when ``ask_cli``, ``cryostash ls`` agrees."""
    assert host.scratch_entries() == []
    assert stored_files(host.home) == []
    db = host.home / "catalog.db"
    assert not db.exists() or catalog_rows(f"sqlite:///{db}").get("checkpoints", []) == []
    if ask_cli and not (host.home / "store").exists():
        # Nothing ever written: a reading verb names the missing store (it creates none).
        done = host.cli("ls", check=False)
        assert done.returncode == 3 and "does not exist" in done.stderr, done.stderr
        assert not (host.home / "store").exists()
    elif ask_cli:
        assert host.json("ls") == []
