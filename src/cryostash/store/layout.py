"""Where things live inside a store root (pure string functions, no I/O).

```
<root>/checkpoints/<target>/<name>/manifest.json   written last, create-only
<root>/blobs/<h[0:2]>/<h>                          content-addressed bytes
```

Every component is validated before a path is built, so that no caller input can
name a path outside the root. The ``*_key`` functions render the typed keys
(:class:`~cryostash.objects.key.Key`) the backends take: their kind tells the object
seam's wrappers what each object is (a chunk is cacheable).
"""

from __future__ import annotations

import re

from cryostash.errors import UsageError
from cryostash.names import validate_name, validate_target
from cryostash.objects.key import Key, Kind

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


def checkpoint_dir(root: str, target: str, name: str) -> str:
    """``<root>/checkpoints/<target>/<name>`` (both validated)."""
    return join(root, CHECKPOINTS, validate_target(target), validate_name(name))


def manifest_path(root: str, target: str, name: str) -> str:
    """``<root>/checkpoints/<target>/<name>/manifest.json``."""
    return join(checkpoint_dir(root, target, name), MANIFEST)


def blob_path(root: str, digest: str) -> str:
    """``<root>/blobs/<h[0:2]>/<h>`` (digest validated)."""
    validate_digest(digest)
    return join(root, BLOBS, digest[:2], digest)


def chunk_key(digest: str) -> Key:
    """The key of chunk object ``digest`` (``blobs/<h[0:2]>/<h>``; digest validated)."""
    return Key(Kind.CHUNK, blob_path("", digest).lstrip("/"), digest)


def manifest_key(target: str, name: str) -> Key:
    """The key of the manifest of ``target``/``name`` (both validated)."""
    return Key(Kind.MANIFEST, manifest_path("", target, name).lstrip("/"), f"{target}/{name}")


def checkpoint_prefix(target: str, name: str) -> str:
    """``checkpoints/<target>/<name>``: the folder of one checkpoint (both validated)."""
    return checkpoint_dir("", target, name).lstrip("/")
