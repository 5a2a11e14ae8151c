"""Store root URLs: parse, classify (local or not), and show without credentials.

A store root is either a plain local path (``/srv/cryostash``, ``./store``), a
``file://`` URL, or any URL fsspec understands (``s3://bucket/prefix``,
``memory://x``, ``simplecache::s3://bucket``). Nothing here imports fsspec at module
import time: :func:`open_root` imports it when a store that is not on the local disk
is opened.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from cryostash.errors import UsageError
from cryostash.urls import strip_credentials

#: ``scheme://`` at the start of one (non-chained) URL part.
_SCHEME = re.compile(r"^(?P<scheme>[A-Za-z][A-Za-z0-9+.\-]*)://")
#: Protocols served by the local file system (atomic link/rename available).
LOCAL_PROTOCOLS = frozenset({"file", "local"})


def redact_url(url: str) -> str:
    """Return ``url`` without ``user:password@`` and without secret query parameters.

    Safe to show in messages and to record in the catalog (see :mod:`cryostash.urls`).

    >>> redact_url("s3://AKIA:secret@bucket/prefix?sig=abc&region=x")
    's3://bucket/prefix?region=x'
    """
    return strip_credentials(url)


def is_local_path(url: str) -> bool:
    """True for a plain path (no ``scheme://`` and no ``::`` chaining)."""
    return "::" not in url and "://" not in url


def protocols(url: str) -> list[str]:
    """The protocols named by ``url``, outermost first (``file`` for a plain path).

    Raises:
        UsageError: a part of a URL has ``://`` but no valid scheme before it.
    """
    if is_local_path(url):
        return ["file"]
    found: list[str] = []
    for part in url.split("::"):
        match = _SCHEME.match(part)
        if match:
            found.append(match.group("scheme").lower())
        elif "://" in part or not part:
            raise UsageError(f"malformed store URL {redact_url(url)!r}")
        else:  # a bare protocol name in a chain: ``simplecache::s3://...``
            found.append(part.lower())
    return found


@dataclass(frozen=True)
class OpenedRoot:
    """A store root resolved by fsspec.

    Attributes:
        fs: the fsspec filesystem instance; None for the local file system, which the
            caller opens (``LocalFileSystem``) only if it needs fsspec at all.
        root: the root path in ``fs``'s own terms (no protocol, no trailing slash).
        url: the canonical, credential-free URL of the root (catalog key, messages).
        local_root: the absolute local path when the store is on the local disk.
    """

    fs: Any
    root: str
    url: str
    local_root: str | None


def canonical_url(url: str) -> str:
    """The canonical display form of a store root: credentials stripped, no trailing
    slash; a local path (or ``file://`` URL) becomes an absolute plain path."""
    url = url.strip()
    if is_local_path(url):
        return os.path.abspath(os.path.expanduser(url)) if url else url
    match = _SCHEME.match(url)
    if match and match.group("scheme").lower() in LOCAL_PROTOCOLS and "::" not in url:
        rest = url[match.end() :]  # file:///abs -> /abs; file://rel/x -> rel/x
        return os.path.abspath(os.path.expanduser(rest.split("?", 1)[0] or "/"))
    clean = redact_url(url)
    trimmed = clean.rstrip("/")
    if not trimmed or trimmed.endswith(":"):
        return clean
    return trimmed


def open_root(url: str, storage_options: Mapping[str, Any] | None = None) -> OpenedRoot:
    """Resolve ``url`` to an fsspec filesystem and root path (imports fsspec, except for
    a local root).

    Raises:
        UsageError: empty or malformed URL, unknown protocol, a protocol whose
            package is not installed, or a local root that exists and is not a folder
            (``PATH exists and is not a directory``, Docker's message).
    """
    url = url.strip()
    if not url:
        raise UsageError("store URL is empty")
    shown = redact_url(url)
    names = protocols(url)
    if names == ["file"] or (len(names) == 1 and names[0] in LOCAL_PROTOCOLS):
        path = canonical_url(url)  # no fsspec import: the local disk needs none
        if os.path.exists(path) and not os.path.isdir(path):
            raise UsageError(f"{path} exists and is not a directory")
        return OpenedRoot(None, path.rstrip("/") or "/", path, path)
    from fsspec.registry import known_implementations, registry

    for name in names:
        if name not in registry and name not in known_implementations:
            raise UsageError(f"unknown store protocol {name!r} in URL {shown!r}")

    from fsspec.core import url_to_fs

    options = dict(storage_options or {})
    if names in (["s3"], ["s3a"]):
        from cryostash.storage.s3 import with_defaults

        options = with_defaults(options)
    try:
        fs, root = url_to_fs(url, **options)
    except ImportError as exc:
        raise UsageError(f"cannot open store {shown!r}: {exc}") from exc
    except (ValueError, TypeError) as exc:
        raise UsageError(f"malformed store URL {shown!r}: {exc}") from exc
    root = str(root).rstrip("/")
    if not root and names[-1] != "memory":
        raise UsageError(f"store URL {shown!r} names no bucket or path")
    return OpenedRoot(fs, root, canonical_url(url), None)
