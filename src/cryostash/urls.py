"""URLs (a leaf): parse and classify store roots; credentials never recorded nor shown.

Two kinds of URL pass through cryostash:

- store roots: a plain local path (``/srv/cryostash``, ``./store``), a ``file://`` URL,
  or any URL fsspec understands (``s3://bucket/prefix``, ``memory://x``,
  ``simplecache::s3://key:secret@bucket``). :func:`canonical_url` gives the one form a
  store is known by (the catalog's key, every message): credentials stripped, no
  trailing slash, a local root as an absolute path. :func:`protocols` and
  :func:`is_local_path` classify them (opening one is :mod:`cryostash.objects.location`'s).
- the catalog's own SQLAlchemy URL, shown in error messages by :func:`redact_db_url`
  with the password hidden.

Nothing here imports fsspec or SQLAlchemy at import time.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from urllib.parse import parse_qsl, urlencode

from cryostash.errors import UsageError
from cryostash.redact import SECRET_KEY as _SECRET_PARAM
from cryostash.redact import redact_text

#: ``scheme://user:password@`` in any string (for URLs SQLAlchemy cannot parse).
_USERINFO = re.compile(r"(?P<scheme>[A-Za-z][A-Za-z0-9+.\-]*://)[^/@\s]*@")


def _split(url: str) -> tuple[str, str, str, str, str]:
    """``scheme://netloc/path?query#fragment`` -> its five parts (plain string split).

    ``urlsplit``/``urlunsplit`` are not used to rebuild: they turn ``memory://`` into
    ``memory:`` and normalise other details that are part of a store's identity.
    """
    scheme, _, rest = url.partition("://")
    cut = min((i for i in (rest.find(c) for c in "/?#") if i >= 0), default=len(rest))
    netloc, tail = rest[:cut], rest[cut:]
    tail, _, fragment = tail.partition("#")
    path, _, query = tail.partition("?")
    return scheme, netloc, path, query, fragment


def _join(scheme: str, netloc: str, path: str, query: str, fragment: str) -> str:
    url = f"{scheme}://{netloc}{path}"
    if query:
        url += f"?{query}"
    if fragment:
        url += f"#{fragment}"
    return url


def _strip_one(url: str, *, trim: bool) -> str:
    """Strip user info and secret query parameters from one (non-chained) URL.

    With ``trim``, also drop trailing slashes of the path (of a local path too).
    """
    if "://" not in url:
        trimmed = url.rstrip("/")
        return trimmed if trim and trimmed else url
    scheme, netloc, path, query, fragment = _split(url)
    netloc = netloc.rpartition("@")[2]
    if query:
        pairs = parse_qsl(query, keep_blank_values=True)
        kept = [(k, v) for k, v in pairs if not _SECRET_PARAM.search(k)]
        if len(kept) != len(pairs):  # re-encode only when something was dropped
            query = urlencode(kept)
    if trim:
        path = path.rstrip("/") if netloc or path.strip("/") else path
    return _join(scheme, netloc, path, query, fragment)


def strip_credentials(url: str) -> str:
    """Return ``url`` without ``user:password@`` and without secret query parameters.

    fsspec chained URLs (``a::b::c``) are handled part by part. Local paths are
    returned unchanged.

    >>> strip_credentials("s3://AKIA:secret@bucket/prefix")
    's3://bucket/prefix'
    >>> strip_credentials("simplecache::sftp://alice:pw@host/srv")
    'simplecache::sftp://host/srv'
    """
    return "::".join(_strip_one(part, trim=False) for part in url.split("::"))


#: ``scheme://`` at the start of one (non-chained) URL part.
_SCHEME = re.compile(r"^(?P<scheme>[A-Za-z][A-Za-z0-9+.\-]*)://")
#: Protocols served by the local file system (atomic link/rename available).
LOCAL_PROTOCOLS = frozenset({"file", "local"})


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
            raise UsageError(f"malformed store URL {strip_credentials(url)!r}")
        else:  # a bare protocol name in a chain: ``simplecache::s3://...``
            found.append(part.lower())
    return found


def canonical_url(url: str) -> str:
    """The one form a store root is known by: in the catalog (its key) and in messages.

    Credentials are stripped (:func:`strip_credentials`) and trailing slashes removed
    (``s3://b/p/`` and ``s3://b/p`` are the same store), except where that would leave
    nothing of the path (``memory://``); a local path or ``file://`` URL becomes an
    absolute plain path. Idempotent.
    """
    url = url.strip()
    if is_local_path(url):
        return os.path.abspath(os.path.expanduser(url)) if url else url
    match = _SCHEME.match(url)
    if match and match.group("scheme").lower() in LOCAL_PROTOCOLS and "::" not in url:
        rest = url[match.end() :]  # file:///abs -> /abs; file://rel/x -> rel/x
        return os.path.abspath(os.path.expanduser(rest.split("?", 1)[0] or "/"))
    return "::".join(_strip_one(part, trim=True) for part in url.split("::"))


def redact_db_url(url: object) -> str:
    """The catalog URL as shown in messages: the password replaced by ``***``, the
    values of secret-looking query parameters (``?password=``, ``?sslkey=``...) too,
    and the rest of the redaction rule (:func:`cryostash.redact.redact_text`) applied."""
    text = str(url)
    try:
        from sqlalchemy.engine import make_url

        text = make_url(text).render_as_string(hide_password=True)
    except Exception:  # not a parsable URL: hide anything between :// and @
        text = _USERINFO.sub(r"\g<scheme>***@", text)
    user_info, at, rest = text.partition("@")
    if at and "://" in user_info:  # keep ``user:***@`` (SQLAlchemy's form) as it is
        return f"{user_info}@{redact_text(rest)}"
    return redact_text(text)


def sqlite_file(url: str) -> Path | None:
    """The database file of a plain ``sqlite:///PATH`` URL (no driver, query or
    ``file:``/``:memory:`` database); None for any other URL."""
    for prefix in ("sqlite:///", "sqlite+pysqlite:///"):
        if url.startswith(prefix):
            path = url[len(prefix):]
            if not path or any(c in path for c in "?%#") or path.startswith(("file:", ":")):
                return None
            return Path(path)
    return None
