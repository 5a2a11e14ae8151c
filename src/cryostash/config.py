"""Settings: where the store, catalog and scratch are, and who this host is.

Precedence: flags beat environment beats config file beats defaults.

Environment: ``CRYOSTASH_STORE``, ``CRYOSTASH_CATALOG``, ``CRYOSTASH_SCRATCH``,
``CRYOSTASH_HOST``, ``CRYOSTASH_CRIU``, ``CRYOSTASH_CONFIG`` (path of the config file).

Config file (TOML, optional): ``$CRYOSTASH_CONFIG``, else
``/etc/cryostash/config.toml`` for root, ``$XDG_CONFIG_HOME/cryostash/config.toml``
otherwise; keys ``store``, ``catalog``, ``scratch``, ``host``, ``criu``.

Defaults live under the data folder: ``/var/lib/cryostash`` for root,
``$XDG_DATA_HOME/cryostash`` (``~/.local/share/cryostash``) otherwise:
``store/`` (local store), ``catalog.db`` (SQLite), ``scratch/``.
"""

from __future__ import annotations

import os
import socket
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cryostash.errors import UsageError

_KEYS = ("store", "catalog", "scratch", "host", "criu")


def data_dir(env: Mapping[str, str] | None = None) -> Path:
    """The default data folder: ``/var/lib/cryostash`` for root, else XDG data home."""
    env = os.environ if env is None else env
    if os.geteuid() == 0:
        return Path("/var/lib/cryostash")
    base = env.get("XDG_DATA_HOME") or str(Path.home() / ".local" / "share")
    return Path(base) / "cryostash"


def config_file(env: Mapping[str, str] | None = None) -> Path:
    """Where the config file is looked for (it need not exist)."""
    env = os.environ if env is None else env
    if env.get("CRYOSTASH_CONFIG"):
        return Path(env["CRYOSTASH_CONFIG"])
    if os.geteuid() == 0:
        return Path("/etc/cryostash/config.toml")
    base = env.get("XDG_CONFIG_HOME") or str(Path.home() / ".config")
    return Path(base) / "cryostash" / "config.toml"


@dataclass(frozen=True)
class Settings:
    """Resolved settings of one cryostash invocation.

    Attributes:
        store_url: root URL (or local path) of the default store.
        catalog_url: SQLAlchemy URL of the catalog.
        scratch_dir: local folder for dump and restore scratch directories.
        host: this host's name, recorded in rows and events.
        criu_path: the CRIU binary to use, or None to search PATH and the private prefix.
        storage_options: extra fsspec options for the store (never persisted).
    """

    store_url: str
    catalog_url: str
    scratch_dir: Path
    host: str
    criu_path: str | None = None
    storage_options: Mapping[str, Any] = field(default_factory=dict)


def _read_config_file(path: Path) -> dict[str, str]:
    if not path.is_file():
        return {}
    try:
        with path.open("rb") as fh:
            raw = tomllib.load(fh)
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise UsageError(f"cannot read config file {path}: {exc}") from exc
    return {k: str(v) for k, v in raw.items() if k in _KEYS}


def resolve_settings(
    flags: Mapping[str, str | None] | None = None,
    env: Mapping[str, str] | None = None,
) -> Settings:
    """Resolve settings from flags, environment, config file and defaults.

    Args:
        flags: values given on the command line (``None`` means not given), keyed by
            ``store``, ``catalog``, ``scratch``, ``host``, ``criu``.
        env: the environment (defaults to ``os.environ``).
    """
    env = os.environ if env is None else env
    flags = flags or {}
    from_file = _read_config_file(config_file(env))

    def pick(key: str) -> str | None:
        value = flags.get(key)
        if value:
            return value
        value = env.get(f"CRYOSTASH_{key.upper()}")
        if value:
            return value
        return from_file.get(key)

    base = data_dir(env)
    store = pick("store") or str(base / "store")
    catalog = pick("catalog") or f"sqlite:///{base / 'catalog.db'}"
    scratch = Path(pick("scratch") or str(base / "scratch"))
    host = pick("host") or socket.gethostname()
    return Settings(
        store_url=store,
        catalog_url=catalog,
        scratch_dir=scratch,
        host=host,
        criu_path=pick("criu"),
    )
