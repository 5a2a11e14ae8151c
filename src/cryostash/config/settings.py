"""Settings: where the store, catalog and scratch are, and who this host is.

Precedence: flags beat environment beats config file beats defaults.

Environment: ``CRYOSTASH_STORE``, ``CRYOSTASH_CATALOG``, ``CRYOSTASH_SCRATCH``,
``CRYOSTASH_HOST``, ``CRYOSTASH_CRIU``, ``CRYOSTASH_CONFIG`` (path of the config file),
``CRYOSTASH_STORAGE_OPTIONS`` (a JSON object of fsspec storage options), ``CRYOSTASH_LEASE``
(how long a create's reservation outlives its last heartbeat; default 60s),
``CRYOSTASH_CATALOG_TIMEOUT`` (how long connecting to a PostgreSQL catalog may take before
failing; default :data:`cryostash.catalog.database.DEFAULT_CONNECT_TIMEOUT_S`, 10s; a
``connect_timeout`` in the catalog URL's query wins).

Secrets from files: ``CRYOSTASH_CATALOG_FILE`` (a file holding the catalog URL, for one
with a password) and ``CRYOSTASH_STORAGE_OPTIONS_FILE`` (a file holding a JSON object of
storage options) keep them out of every command line and environment listing; the
variable without ``_FILE`` wins when both are set. Every secret the settings are given
(storage options with secret-looking keys, URL passwords, ``AWS_*`` secrets) is
registered with :func:`cryostash.redact.remember`, so no message ever shows it.

Config file (TOML): ``$CRYOSTASH_CONFIG`` (it must exist: ``/dev/null`` for none), else
``/etc/cryostash/config.toml`` for root, ``$XDG_CONFIG_HOME/cryostash/config.toml``
otherwise (optional); keys ``store``, ``catalog``, ``scratch``, ``host``, ``criu``, ``lease``,
``catalog_timeout``, the data-path keys ``chunk_size``, ``compression``, ``cache``,
``cache_size`` (also as ``CRYOSTASH_<KEY>``: see :mod:`cryostash.config.transfer`), and a
table ``[storage_options]``. Any other key is an error naming the file and the key (with
the nearest known key: "did you mean store?").

Storage options are merged key by key: command line over environment over config file.
They often hold credentials: they are never shown (not even in ``repr(settings)``) and
never persisted.

Defaults live under the data folder: ``/var/lib/cryostash`` for root,
``$XDG_DATA_HOME/cryostash`` (``~/.local/share/cryostash``) otherwise:
``store/`` (local store), ``catalog.db`` (SQLite), ``scratch/``; the chunk cache is
``cache/`` beside the SQLite catalog file (``DATA/cache`` for the default catalog, so
redirecting the catalog to a throwaway folder takes the cache there too; ``DATA/cache``
with a PostgreSQL catalog). :attr:`Settings.store_given` and :attr:`Settings.catalog_given`
tell an explicitly chosen store or catalog (flag, environment, config file) from the
default one: a reading verb refuses the first when it does not exist, and finds the second
empty (see :class:`cryostash.repository.Repository`).
"""

from __future__ import annotations

import json
import math
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
from cryostash.urls import sqlite_file

_KEYS = (
    "store", "catalog", "scratch", "host", "criu", "lease", "catalog_timeout",
    *transfer_settings.KEYS,
)
#: Keys of the config file that are tables, not values.
_TABLES = ("storage_options",)

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
        store_given, catalog_given: the store or catalog was chosen (flag, environment,
            config file), not defaulted.
    """

    store_url: str
    catalog_url: str = field(repr=False)  # may hold a password
    scratch_dir: Path
    host: str
    criu_path: str | None = None
    storage_options: Mapping[str, Any] = field(default_factory=dict, repr=False)
    transfer: TransferSettings = field(default_factory=TransferSettings)
    lease_s: float = DEFAULT_LEASE_S
    store_given: bool = False
    catalog_given: bool = False


def _load_config_file(path: Path, *, named: bool) -> dict[str, Any]:
    """The config file's table; {} when there is none. ``named``: the path came from
    ``CRYOSTASH_CONFIG``, so it must exist (a typo is never silently ignored).

    Raises:
        UsageError: a named file that does not exist, an unreadable or malformed file,
            or an unknown key (named with the nearest known one).
    """
    if not path.exists():
        if named:
            raise UsageError(f"config file {path} (named by CRYOSTASH_CONFIG) does not exist")
        return {}
    if not named and not path.is_file():
        return {}
    import tomllib  # only when there is a file to read (start-up time)

    try:
        with path.open("rb") as fh:
            raw = tomllib.load(fh)
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise UsageError(f"cannot read config file {path}: {exc}") from exc
    for key in raw:
        if key not in _KEYS and key not in _TABLES:
            raise UsageError(f"config file {path}: unknown key {key!r}{_suggestion(key)}")
    return raw


def _suggestion(key: str) -> str:
    """`` (did you mean store?)`` for the known key nearest ``key``, else ''."""
    import difflib

    found = difflib.get_close_matches(key, (*_KEYS, *_TABLES), n=1, cutoff=0.6)
    known = ", ".join(sorted((*_KEYS, *_TABLES)))
    return f" (did you mean {found[0]}?)" if found else f" (known keys: {known})"


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
    raw = _load_config_file(path, named=bool(env.get("CRYOSTASH_CONFIG")))
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
    given_store, given_catalog = pick("store"), pick("catalog")
    store = given_store or str(base / "store")
    catalog = with_connect_timeout(
        given_catalog or f"sqlite:///{base / 'catalog.db'}", pick("catalog_timeout")
    )
    catalog_file = sqlite_file(catalog)
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
        transfer=transfer_settings.resolve(
            pick, base if catalog_file is None else catalog_file.expanduser().parent
        ),
        lease_s=_lease(pick("lease")),
        store_given=bool(given_store),
        catalog_given=bool(given_catalog),
    )


def with_connect_timeout(url: str, timeout: str | None) -> str:
    """``url`` with ``connect_timeout`` (whole seconds, at least 1) added to its query
    when it is a PostgreSQL URL given a ``timeout`` (``catalog_timeout``) and has none
    already (the URL's own wins); any other URL unchanged.

    Raises:
        UsageError: a timeout that is not a positive duration.
    """
    if timeout is None:
        return url
    seconds = parse_duration(timeout, "catalog timeout")
    if seconds <= 0:
        raise UsageError(f"invalid catalog timeout {timeout!r}: it must be positive")
    if not url.startswith("postgresql") or "connect_timeout=" in url.partition("?")[2]:
        return url
    sep = "&" if "?" in url else "?"
    return f"{url}{sep}connect_timeout={max(1, math.ceil(seconds))}"


def _lease(text: str | None) -> float:
    if text is None:
        return DEFAULT_LEASE_S
    seconds = parse_duration(text, "lease")
    if seconds < MIN_LEASE_S:
        raise UsageError(f"invalid lease {text!r}: it must be at least {MIN_LEASE_S:g}s")
    return seconds
