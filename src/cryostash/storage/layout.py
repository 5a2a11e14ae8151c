"""Where things live inside a store root (pure string functions, no I/O).

```
<root>/checkpoints/<target>/<name>/manifest.json   written last, create-only
<root>/blobs/<h[0:2]>/<h>                          content-addressed bytes
```

Every component is validated before a path is built, so that no caller input can
name a path outside the root.
"""

from __future__ import annotations

import re

from cryostash.errors import UsageError
from cryostash.names import validate_name, validate_target

CHECKPOINTS = "checkpoints"
BLOBS = "blobs"
MANIFEST = "manifest.json"
#: A BLAKE3 digest as stored: 64 lowercase hex characters.
DIGEST_PATTERN = re.compile(r"^[0-9a-f]{64}$")


def is_digest(value: object) -> bool:
    """True if ``value`` is a well-formed blob digest (64 lowercase hex characters)."""
    return isinstance(value, str) and DIGEST_PATTERN.fullmatch(value) is not None


def validate_digest(digest: str) -> str:
    """Return ``digest`` if well-formed.

    Raises:
        UsageError: ``invalid blob digest '...': expected 64 lowercase hex characters``.
    """
    if not is_digest(digest):
        raise UsageError(f"invalid blob digest {digest!r}: expected 64 lowercase hex characters")
    return digest


def join(root: str, *parts: str) -> str:
    """Join ``parts`` under ``root`` with ``/`` (a root of ``/`` or ``""`` works)."""
    return "/".join([root.rstrip("/"), *parts])


def checkpoints_dir(root: str, target: str | None = None) -> str:
    """``<root>/checkpoints`` or ``<root>/checkpoints/<target>`` (target validated)."""
    if target is None:
        return join(root, CHECKPOINTS)
    return join(root, CHECKPOINTS, validate_target(target))


def checkpoint_dir(root: str, target: str, name: str) -> str:
    """``<root>/checkpoints/<target>/<name>`` (both validated)."""
    return join(root, CHECKPOINTS, validate_target(target), validate_name(name))


def manifest_path(root: str, target: str, name: str) -> str:
    """``<root>/checkpoints/<target>/<name>/manifest.json``."""
    return join(checkpoint_dir(root, target, name), MANIFEST)


def blobs_dir(root: str) -> str:
    """``<root>/blobs``."""
    return join(root, BLOBS)


def blob_path(root: str, digest: str) -> str:
    """``<root>/blobs/<h[0:2]>/<h>`` (digest validated)."""
    validate_digest(digest)
    return join(root, BLOBS, digest[:2], digest)


def parse_manifest_path(root: str, path: str) -> tuple[str, str] | None:
    """``(target, name)`` if ``path`` is exactly a manifest under ``root``, else None.

    Paths whose target or name would not pass validation are ignored: they cannot
    have been written through a :class:`~cryostash.storage.Store`.
    """
    prefix = checkpoints_dir(root).lstrip("/") + "/"
    rel = path.lstrip("/")
    if not rel.startswith(prefix):
        return None
    parts = rel[len(prefix) :].split("/")
    if len(parts) != 3 or parts[2] != MANIFEST:
        return None
    target, name = parts[0], parts[1]
    try:
        validate_target(target)
        validate_name(name)
    except ValueError:
        return None
    return target, name


def parse_blob_path(root: str, path: str) -> str | None:
    """The digest if ``path`` is exactly a blob under ``root``, else None.

    Temporary files of an interrupted write (hidden, with a suffix) are not blobs.
    """
    prefix = blobs_dir(root).lstrip("/") + "/"
    rel = path.lstrip("/")
    if not rel.startswith(prefix):
        return None
    parts = rel[len(prefix) :].split("/")
    if len(parts) != 2 or not is_digest(parts[1]) or parts[0] != parts[1][:2]:
        return None
    return parts[1]
