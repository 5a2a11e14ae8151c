"""From a store URL to its backend: the one constructor (restic's ``location/registry``).

:func:`open_backend` parses the root URL (see :mod:`cryostash.urls`), checks that its
protocols are known, and opens the backend: a plain path or ``file://`` URL is the local
disk (:class:`~cryostash.objects.local.LocalBackend`, no fsspec import); anything else an
fsspec file system (:class:`~cryostash.objects.fsspec_backend.FsspecBackend`), S3 with bounded
timeouts and retries (:mod:`cryostash.objects.s3`). This is where "local or not" is
decided; everything above asks the backend's capabilities.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

from cryostash.errors import UsageError
from cryostash.objects.backend import Backend
from cryostash.urls import LOCAL_PROTOCOLS, canonical_url, protocols, strip_credentials


def open_backend(url: str, storage_options: Mapping[str, Any] | None = None) -> Backend:
    """The backend of the store rooted at ``url`` (imports fsspec, except for a local root).

    Raises:
        UsageError: empty or malformed URL, unknown protocol, a protocol whose
            package is not installed, or a local root that exists and is not a folder
            (``PATH exists and is not a directory``, Docker's message).
    """
    url = url.strip()
    if not url:
        raise UsageError("store URL is empty")
    shown = strip_credentials(url)
    names = protocols(url)
    if names == ["file"] or (len(names) == 1 and names[0] in LOCAL_PROTOCOLS):
        from cryostash.objects.local import LocalBackend

        path = canonical_url(url)  # no fsspec import: the local disk needs none
        if os.path.exists(path) and not os.path.isdir(path):
            raise UsageError(f"{path} exists and is not a directory")
        return LocalBackend(path)
    from fsspec.registry import known_implementations, registry

    for name in names:
        if name not in registry and name not in known_implementations:
            raise UsageError(f"unknown store protocol {name!r} in URL {shown!r}")

    from fsspec.core import url_to_fs

    options = dict(storage_options or {})
    if names in (["s3"], ["s3a"]):
        from cryostash.objects.s3 import with_defaults

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
    from cryostash.objects.fsspec_backend import FsspecBackend

    return FsspecBackend(fs, root, canonical_url(url), chained="::" in url)
