"""Settings: where the store, catalog and scratch are, and who this host is.

Precedence: flags beat environment beats config file beats defaults.

Environment: ``CRYOSTASH_STORE``, ``CRYOSTASH_CATALOG``, ``CRYOSTASH_SCRATCH``,
``CRYOSTASH_HOST``, ``CRYOSTASH_CRIU``, ``CRYOSTASH_CONFIG`` (path of the config file),
``CRYOSTASH_STORAGE_OPTIONS`` (a JSON object of fsspec storage options), ``CRYOSTASH_LEASE``
(how long a create's reservation outlives its last heartbeat; default 60s).

Secrets from files: ``CRYOSTASH_CATALOG_FILE`` (a file holding the catalog URL, for one
with a password) and ``CRYOSTASH_STORAGE_OPTIONS_FILE`` (a file holding a JSON object of
storage options) keep them out of every command line and environment listing; the
variable without ``_FILE`` wins when both are set. Every secret the settings are given
(storage options with secret-looking keys, URL passwords, ``AWS_*`` secrets) is
registered with :func:`cryostash.redact.remember`, so no message ever shows it.

Config file (TOML, optional): ``$CRYOSTASH_CONFIG``, else
``/etc/cryostash/config.toml`` for root, ``$XDG_CONFIG_HOME/cryostash/config.toml``
otherwise; keys ``store``, ``catalog``, ``scratch``, ``host``, ``criu``, ``lease``, the data-path
keys ``chunk_size``, ``compression``, ``cache``, ``cache_size`` (also as
``CRYOSTASH_<KEY>``: see :mod:`cryostash.config.transfer`), and a table
``[storage_options]``.

Storage options are merged key by key: command line over environment over config file.
They often hold credentials: they are never shown (not even in ``repr(settings)``) and
never persisted.

Defaults live under the data folder: ``/var/lib/cryostash`` for root,
``$XDG_DATA_HOME/cryostash`` (``~/.local/share/cryostash``) otherwise:
``store/`` (local store), ``catalog.db`` (SQLite), ``scratch/``.
"""

from __future__ import annotations

import json
import os
import socket
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cryostash.config import transfer as transfer_settings
from cryostash.config.transfer import TransferSettings
from cryostash.errors import UsageError
from cryostash.names import validate_host
from cryostash.redact import remember, remember_env, remember_options
from cryostash.units import parse_duration

_KEYS = ("store", "catalog", "scratch", "host", "criu", "lease", *transfer_settings.KEYS)

#: Default lease of a create's reservation (seconds): renewed by its heartbeat every
#: quarter of it; another host may undo the reservation once it has expired.
DEFAULT_LEASE_S = 60.0
#: The shortest lease accepted (the heartbeat must be able to keep up).
MIN_LEASE_S = 1.0


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
        transfer: chunk size, compression and chunk cache
            (:mod:`cryostash.config.transfer`).
        lease_s: lease of a create's reservation in seconds (``lease``; see
            :data:`DEFAULT_LEASE_S`).
    """

    store_url: str
    catalog_url: str = field(repr=False)  # may hold a password
    scratch_dir: Path
    host: str
    criu_path: str | None = None
    storage_options: Mapping[str, Any] = field(default_factory=dict, repr=False)
    transfer: TransferSettings = field(default_factory=TransferSettings)
    lease_s: float = DEFAULT_LEASE_S


def _load_config_file(path: Path) -> dict[str, Any]:
    if not path.is_file():
        return {}
    import tomllib  # only when there is a file to read (start-up time)

    try:
        with path.open("rb") as fh:
            return tomllib.load(fh)
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise UsageError(f"cannot read config file {path}: {exc}") from exc


def parse_option_value(text: str) -> Any:
    """A storage option value: JSON when it parses (``true``, ``5``, ``{"a": 1}``,
    ``"quoted"``), else the text itself."""
    try:
        return json.loads(text)
    except ValueError:
        return text


def parse_storage_options(pairs: Iterable[str] | None) -> dict[str, Any]:
    """``KEY=VALUE`` strings (``--storage-option``) to a dict; values as
    :func:`parse_option_value` reads them.

    Raises:
        UsageError: a pair without ``=`` or with an empty key (named by its position,
            never shown: it may hold a secret).
    """
    options: dict[str, Any] = {}
    for position, pair in enumerate(pairs or [], start=1):
        key, sep, value = pair.partition("=")
        key = key.strip()
        if not sep or not key:
            raise UsageError(f"invalid storage option #{position}: expected KEY=VALUE")
        options[key] = parse_option_value(value)
    return options


def _secret_file(env: Mapping[str, str], name: str) -> str:
    """The value of ``$NAME``, else the text of the file ``$NAME_FILE`` (stripped), else ''.

    Raises:
        UsageError: the file cannot be read (its path named, never its content).
    """
    value = env.get(name, "").strip()
    path = env.get(f"{name}_FILE", "").strip()
    if value or not path:
        return value
    try:
        return Path(path).read_text(encoding="utf-8").strip()
    except (OSError, UnicodeDecodeError) as exc:
        why = exc.strerror if isinstance(exc, OSError) and exc.strerror else type(exc).__name__
        raise UsageError(f"{name}_FILE: cannot read {path}: {why}") from None


def _env_storage_options(env: Mapping[str, str]) -> dict[str, Any]:
    text = _secret_file(env, "CRYOSTASH_STORAGE_OPTIONS")
    if not text:
        return {}
    try:
        value = json.loads(text)
    except ValueError as exc:
        raise UsageError(f"CRYOSTASH_STORAGE_OPTIONS is not valid JSON: {exc.args[0]}") from None
    if not isinstance(value, dict):
        raise UsageError("CRYOSTASH_STORAGE_OPTIONS must be a JSON object")
    return value


def _remember_url_secrets(url: str, *, user_is_secret: bool) -> None:
    """Register the password (user-info) and secret query values of ``url``; with
    ``user_is_secret`` (a store URL: ``s3://KEY_ID:SECRET@``) the user name too."""
    from urllib.parse import parse_qsl, unquote

    from cryostash.redact import SECRET_KEY

    for part in url.split("::"):
        rest = part.partition("://")[2]
        netloc = rest.split("/", 1)[0]
        if "@" in netloc:
            user_info = netloc.rpartition("@")[0]
            user, _, password = user_info.partition(":")
            remember(password, unquote(password))
            if user_is_secret:  # ``KEY_ID:SECRET@``: the key id is not shown either
                remember(user, unquote(user))
        query = rest.partition("?")[2].partition("#")[0]
        for key, value in parse_qsl(query, keep_blank_values=True):
            if SECRET_KEY.search(key):
                remember(value)


def _file_storage_options(raw: Mapping[str, Any], path: Path) -> dict[str, Any]:
    value = raw.get("storage_options", {})
    if not isinstance(value, dict):
        raise UsageError(f"config file {path}: storage_options must be a table")
    return value


def resolve_settings(
    flags: Mapping[str, str | None] | None = None,
    env: Mapping[str, str] | None = None,
    storage_options: Mapping[str, Any] | None = None,
) -> Settings:
    """Resolve settings from flags, environment, config file and defaults.

    Args:
        flags: values given on the command line (``None`` means not given), keyed by
            ``store``, ``catalog``, ``scratch``, ``host``, ``criu``.
        env: the environment (defaults to ``os.environ``).
        storage_options: fsspec storage options given on the command line; merged over
            ``CRYOSTASH_STORAGE_OPTIONS`` and the config file's ``[storage_options]``.

    Raises:
        UsageError: unreadable config file, storage options that are not a JSON
            object (environment) or a table (config file), or a lease that is not a
            duration of at least :data:`MIN_LEASE_S`.
    """
    env = os.environ if env is None else env
    flags = flags or {}
    path = config_file(env)
    raw = _load_config_file(path)
    from_file = {k: str(v) for k, v in raw.items() if k in _KEYS}
    options = {
        **_file_storage_options(raw, path),
        **_env_storage_options(env),
        **dict(storage_options or {}),
    }

    def pick(key: str) -> str | None:
        value = flags.get(key)
        if value:
            return value
        value = (
            _secret_file(env, "CRYOSTASH_CATALOG")
            if key == "catalog"
            else env.get(f"CRYOSTASH_{key.upper()}")
        )
        if value:
            return value
        return from_file.get(key)

    base = data_dir(env)
    store = pick("store") or str(base / "store")
    catalog = pick("catalog") or f"sqlite:///{base / 'catalog.db'}"
    scratch = Path(pick("scratch") or str(base / "scratch"))
    host = validate_host(pick("host") or socket.gethostname())
    remember_options(options)
    remember_env(env)
    _remember_url_secrets(store, user_is_secret=True)
    _remember_url_secrets(catalog, user_is_secret=False)
    return Settings(
        store_url=store,
        catalog_url=catalog,
        scratch_dir=scratch,
        host=host,
        criu_path=pick("criu"),
        storage_options=options,
        transfer=transfer_settings.resolve(pick, base),
        lease_s=_lease(pick("lease")),
    )


def _lease(text: str | None) -> float:
    if text is None:
        return DEFAULT_LEASE_S
    seconds = parse_duration(text, "lease")
    if seconds < MIN_LEASE_S:
        raise UsageError(f"invalid lease {text!r}: it must be at least {MIN_LEASE_S:g}s")
    return seconds
