"""URL hygiene (a leaf): credentials are never recorded nor shown in a message.

Two kinds of URL pass through the catalog:

- store URLs (fsspec roots: ``/srv/store``, ``s3://bucket/prefix``,
  ``simplecache::s3://key:secret@bucket``), recorded in every row. They are
  normalised by :func:`public_store_url` so that the same store always gives the
  same key, with or without credentials.
- the catalog's own SQLAlchemy URL, shown in error messages by
  :func:`redact_db_url` with the password hidden.
"""

from __future__ import annotations

import re
from urllib.parse import parse_qsl, urlencode

#: Query parameters whose values are secrets; they are dropped from store URLs.
_SECRET_PARAM = re.compile(r"pass|secret|token|key|credential|signature|sig$|auth", re.IGNORECASE)
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


def public_store_url(url: str) -> str:
    """The canonical form of a store root URL, as recorded in the catalog.

    Credentials are stripped (:func:`strip_credentials`) and trailing slashes
    removed (``/srv/store/`` and ``/srv/store`` are the same store), except where
    that would leave nothing of the path (``/``, ``memory://``).
    """
    return "::".join(_strip_one(part, trim=True) for part in url.strip().split("::"))


def redact_db_url(url: object) -> str:
    """The catalog URL as shown in messages: the password replaced by ``***``."""
    text = str(url)
    try:
        from sqlalchemy.engine import make_url

        return make_url(text).render_as_string(hide_password=True)
    except Exception:  # not a parsable URL: hide anything between :// and @
        return _USERINFO.sub(r"\g<scheme>***@", text)
