"""The checks of ``cryostash doctor`` (:mod:`.doctor`): what this host can do, and what is
wrong. Each check is a plain :class:`Check`; :class:`Report` holds them all.

They report the CRIU binary (path, version, ``criu check``, features), every other
engine (``runc``, ``podman``, ``docker``, third-party ones) with its availability and,
where unavailable, why; the store's reachability and writability, and the catalog's
reachability and schema revision, and whether the local folders and files that hold
process memory (a local store, the chunk cache, scratch, an SQLite catalog) are readable
by others (a warning, with the ``chmod`` that fixes it). URLs and errors are redacted
(:mod:`cryostash.redact`): a secret given in a URL, a storage option or the environment is
never shown. Never raises for a broken component: each check carries its own error text.
Engines other than CRIU are optional: an unavailable one does not make the report fail.
"""

from __future__ import annotations

import os
import shlex
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cryostash.config import Settings
from cryostash.errors import CryostashError
from cryostash.redact import redact_text
from cryostash.urls import canonical_url


@dataclass(frozen=True)
class Check:
    """One component's result: ``ok`` and what was found, or the error.

    ``optional``: a failure is reported but does not fail the report (engines other
    than CRIU). ``warning``: the same, printed as a warning (``WARN``).
    """

    name: str
    ok: bool
    detail: dict[str, Any] = field(default_factory=dict)
    error: str | None = None
    optional: bool = False
    warning: bool = False

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready view (the error redacted)."""
        error = None if self.error is None else redact_text(self.error)
        out = {"name": self.name, "ok": self.ok, **self.detail, "error": error}
        return {**out, "optional": self.optional, "warning": self.warning}


@dataclass(frozen=True)
class Report:
    """All checks; ``ok`` when every one passed."""

    checks: tuple[Check, ...]

    @property
    def ok(self) -> bool:
        """True when every check passed (optional ones aside)."""
        return all(c.ok or c.optional or c.warning for c in self.checks)

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready view (``doctor --json``)."""
        return {"ok": self.ok, "checks": [c.as_dict() for c in self.checks]}


def check_criu(settings: Settings) -> Check:
    """Find CRIU, run ``criu check`` and probe features."""
    from cryostash.engines import get_engine

    try:
        avail = get_engine("criu", criu_path=settings.criu_path).available()
    except CryostashError as exc:
        return Check("criu", False, error=str(exc))
    return Check(
        "criu",
        avail.ok,
        {"path": avail.path, "version": avail.version, "features": dict(avail.features)},
        error=avail.reason,
    )


def check_engine(settings: Settings, name: str) -> Check:
    """An optional check of one engine: availability, version, or why it is unavailable."""
    from cryostash.engines import get_engine

    try:
        avail = get_engine(name, criu_path=settings.criu_path).available()
    except Exception as exc:  # a broken third-party engine must not break doctor
        return Check(name, False, {"engine": True}, error=str(exc), optional=True)
    detail = {"engine": True, "path": avail.path, "version": avail.version}
    return Check(name, avail.ok, detail, error=avail.reason, optional=True)


def check_engines(settings: Settings) -> list[Check]:
    """:func:`check_engine` for every engine other than CRIU, sorted by name."""
    from cryostash.engines import engine_names

    return [check_engine(settings, n) for n in engine_names() if n != "criu"]


#: What doctor says of a store that does not exist yet (it never creates one).
_NOT_YET = (
    "does not exist yet: the first `cryostash create` (or `cryostash store init`) creates it"
)


def _cache_shown(settings: Settings, remote: bool) -> str:
    """The chunk cache a transfer with the store uses (only a remote store's is used)."""
    if settings.transfer.cache_dir is None:
        return "none"
    return str(settings.transfer.cache_dir) if remote else "none (local store)"


def check_store(settings: Settings) -> Check:
    """Open the default store and prove it is writable (a probe object is written and
    removed), and show the chunk cache it uses. A local store that does not exist is
    reported, never created: a warning when it was chosen explicitly (a typo?)."""
    from cryostash.store import Store

    try:
        store = Store(settings.store_url, settings.storage_options)
        detail = {"url": store.url, "cache": _cache_shown(settings, store.remote)}
        if not store.remote and not store.exists():
            note = _NOT_YET
            if settings.store_given:
                return Check(
                    "store", False, detail, error=f"store {store.url} {note}", warning=True
                )
            return Check("store", True, {**detail, "note": note})
        store.check_writable()
    except CryostashError as exc:
        url = redact_text(canonical_url(settings.store_url))
        return Check("store", False, {"url": url}, error=redact_text(str(exc)))
    return Check("store", True, {**detail, "writable": True})


def check_catalog(settings: Settings) -> Check:
    """Connect to the catalog and compare its schema revision with this version's."""
    from cryostash.catalog import schema
    from cryostash.catalog.database import catalog_exists
    from cryostash.catalog.revisions import NOT_CREATED_NOTE
    from cryostash.urls import redact_db_url

    url = redact_db_url(settings.catalog_url)
    try:
        if not catalog_exists(settings.catalog_url):
            if settings.catalog_given:
                missing = {"url": url, "note": NOT_CREATED_NOTE}
                error = f"catalog {url} does not exist yet"
                return Check("catalog", False, missing, error=error, warning=True)
            return Check("catalog", True, {"url": url, "note": NOT_CREATED_NOTE})
        current = schema.current(settings.catalog_url)
    except CryostashError as exc:
        return Check("catalog", False, {"url": url}, error=str(exc))
    head = schema.HEAD_REVISION
    detail = {"url": url, "revision": current, "head": head}
    if current is None:
        return Check("catalog", True, {**detail, "note": NOT_CREATED_NOTE})
    if current != head:
        return Check(
            "catalog",
            False,
            detail,
            error=f"catalog is at schema revision {current}, this cryostash needs {head}: "
            "run `cryostash db upgrade`",
        )
    return Check("catalog", True, detail)


def _exposed(path: Path) -> bool:
    """True when ``path`` exists and grants group or others any permission (a folder:
    nothing beneath it is protected; a file: its bytes are readable)."""
    try:
        return bool(os.stat(path).st_mode & 0o077)
    except OSError:
        return False


def private_paths(settings: Settings) -> list[tuple[str, Path]]:
    """The local places that hold process memory or its metadata: ``(what, path)``."""
    from cryostash.catalog.database import parse_url
    from cryostash.urls import LOCAL_PROTOCOLS, canonical_url, protocols

    found: list[tuple[str, Path]] = []
    try:
        names = protocols(settings.store_url)
        if names == ["file"] or (len(names) == 1 and names[0] in LOCAL_PROTOCOLS):
            found.append(("store", Path(canonical_url(settings.store_url))))
    except CryostashError:
        pass  # check_store reports a bad URL
    if settings.transfer.cache_dir is not None:
        found.append(("chunk cache", settings.transfer.cache_dir))
    found.append(("scratch", settings.scratch_dir))
    try:
        url = parse_url(settings.catalog_url)
    except CryostashError:
        return found  # check_catalog reports it
    database = url.database or ""
    if url.get_backend_name() == "sqlite" and database not in ("", ":memory:") and not (
        database.startswith("file:")
    ):
        db = Path(database).expanduser()
        found += [("catalog", Path(f"{db}{s}")) for s in ("", "-wal", "-shm")]
    return found


def check_private(settings: Settings) -> Check:
    """Warn about local stores, caches, scratch folders and SQLite catalogs that group or
    others may read (made by an older cryostash or by hand): process memory."""
    exposed = [(what, str(path)) for what, path in private_paths(settings) if _exposed(path)]
    if not exposed:
        return Check("permissions", True, {"private": True})
    listed = "; ".join(f"{what} {path}" for what, path in exposed)
    fix = " ".join(sorted({shlex.quote(path) for _, path in exposed}))
    return Check(
        "permissions",
        False,
        {"exposed": [path for _, path in exposed]},
        error=f"readable by other users (they hold process memory): {listed}; "
        f"fix: chmod -R go-rwx {fix}",
        warning=True,
    )
