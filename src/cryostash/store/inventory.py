"""What a store holds, object by object: for ``verify``, ``gc`` and ``catalog rebuild``.

:meth:`cryostash.store.maintenance.Maintenance.inventory` lists ``checkpoints/`` and ``blobs/``
once (one recursive listing each, with sizes and modification times) and
:func:`classify` sorts every object into:

- manifests: ``checkpoints/<target>/<name>/manifest.json`` with valid names;
- blobs: ``blobs/<h[0:2]>/<h>`` with a well-formed digest;
- strays: anything else there that cryostash may remove once it is old enough:
  temporary files of interrupted writes (``.NAME.<random>.tmp``) anywhere, every file
  in a checkpoint folder that has no manifest (an interrupted create), and files under
  ``blobs/`` that are not blobs. Other files beside a manifest are left alone (room for
  future additions to the layout). At the root, only probe files of an interrupted
  ``Store.check_writable`` (``.cryostash-probe-<hex>``) are strays; nothing else outside
  those two folders is looked at.

Modification times come from what the file system reports (``mtime`` on local disk,
``LastModified`` on S3, ``created`` on ``memory://``...); None where it reports none.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime

from cryostash.errors import UsageError
from cryostash.names import names_ok
from cryostash.objects.backend import ObjectInfo
from cryostash.store import layout

#: Temporary files of cryostash's own atomic writes (``localfs.temp_name``).
_TEMP_NAME = re.compile(r"^\..+\.[0-9a-f]+\.(tmp|part)$")
#: Probe files of ``Store.check_writable`` at the root.
_PROBE_NAME = re.compile(r"^\.cryostash-probe-[0-9a-f]+$")


@dataclass(frozen=True)
class StoredObject:
    """One object of a store.

    Attributes:
        path: relative to the store root, ``/``-separated.
        size: size in bytes.
        modified: last modification (or creation) time in UTC, None if unknown.
    """

    path: str
    size: int
    modified: datetime | None


@dataclass(frozen=True)
class Inventory:
    """Everything under ``checkpoints/`` and ``blobs/``, sorted into three kinds."""

    manifests: Mapping[tuple[str, str], StoredObject]
    blobs: Mapping[str, StoredObject]
    strays: tuple[StoredObject, ...]


def classify(objects: Iterable[ObjectInfo], top: Iterable[ObjectInfo] = ()) -> Inventory:
    """Sort the objects listed under ``checkpoints/`` and ``blobs/`` (keys relative to the
    root) and those directly under the root (``top``: only probe files count) into an
    :class:`Inventory` (see the module docstring). Pure: no I/O."""
    found = [StoredObject(o.key, o.size, o.modified) for o in objects]
    found += [StoredObject(o.key, o.size, o.modified) for o in top if _PROBE_NAME.match(o.key)]
    manifests: dict[tuple[str, str], StoredObject] = {}
    blobs: dict[str, StoredObject] = {}
    rest: list[StoredObject] = []
    for obj in found:
        parts = obj.path.split("/")
        if (
            parts[0] == layout.BLOBS
            and len(parts) == 3
            and layout.is_digest(parts[2])
            and parts[1] == parts[2][:2]
        ):
            blobs[parts[2]] = obj
            continue
        if (
            parts[0] == layout.CHECKPOINTS
            and len(parts) == 4
            and parts[3] == layout.MANIFEST
            and names_ok(parts[1], parts[2])
        ):
            manifests[(parts[1], parts[2])] = obj
            continue
        rest.append(obj)
    strays = []
    for obj in rest:
        parts = obj.path.split("/")
        committed = parts[0] == layout.CHECKPOINTS and tuple(parts[1:3]) in manifests
        if not committed or _TEMP_NAME.match(parts[-1]):
            strays.append(obj)
    return Inventory(manifests, blobs, tuple(sorted(strays, key=lambda o: o.path)))


def stray_key(path: str) -> str:
    """``path`` (relative to the root) if it may be a stray of this layout, to delete.

    Raises:
        UsageError: ``path`` is not under ``checkpoints/`` or ``blobs/`` (or a root-level
            probe file), or is not plain.
    """
    parts = path.split("/")
    probe = len(parts) == 1 and _PROBE_NAME.match(parts[0]) is not None
    if (parts[0] not in (layout.CHECKPOINTS, layout.BLOBS) and not probe) or any(
        p in ("", ".", "..") for p in parts
    ):
        raise UsageError(f"refusing to delete {path!r}: not a stray of this store's layout")
    return path
