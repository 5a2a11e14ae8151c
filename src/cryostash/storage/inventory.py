"""What a store holds, object by object: for ``verify``, ``gc`` and ``catalog rebuild``.

:func:`take_inventory` lists ``checkpoints/`` and ``blobs/`` once (one recursive
listing each, with sizes and modification times) and sorts every object into:

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

import os
import re
from collections.abc import Iterable, Mapping
from contextlib import suppress
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from cryostash.errors import UsageError
from cryostash.names import validate_name, validate_target
from cryostash.storage import layout
from cryostash.storage.store import Store
from cryostash.storage.translate import translating

#: Temporary files of cryostash's own atomic writes (``localfs.temp_name``).
_TEMP_NAME = re.compile(r"^\..+\.[0-9a-f]+\.(tmp|part)$")
#: Probe files of ``Store.check_writable`` at the root.
_PROBE_NAME = re.compile(r"^\.cryostash-probe-[0-9a-f]+$")
#: Keys under which fsspec implementations report a modification (or creation) time.
_TIME_KEYS = ("mtime", "LastModified", "last_modified", "modified", "updated", "created")


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


def modified_time(info: Mapping[str, Any]) -> datetime | None:
    """The modification time in an fsspec ``info`` dict, as aware UTC, or None."""
    for key in _TIME_KEYS:
        value = info.get(key)
        if isinstance(value, datetime):
            return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)
        if isinstance(value, int | float) and not isinstance(value, bool):
            return datetime.fromtimestamp(float(value), UTC)
        if isinstance(value, str):
            with suppress(ValueError):
                parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
                return parsed.replace(tzinfo=UTC) if parsed.tzinfo is None else parsed
    return None


def _relative(root: str, path: str) -> str | None:
    prefix = root.strip("/")
    rel = str(path).strip("/")
    if not prefix:
        return rel
    return rel[len(prefix) + 1 :] if rel.startswith(prefix + "/") else None


def _find(store: Store, folder: str) -> dict[str, Any]:
    """A fresh recursive listing that leaves no cached listing behind: s3fs's ``find``
    caches every sub-folder it saw, and later stats of this process would trust those
    listings (missing objects that other hosts write afterwards)."""
    fs = store.fs
    with suppress(Exception):
        fs.invalidate_cache(folder)
    try:
        return dict(fs.find(folder, detail=True))
    except FileNotFoundError:
        return {}
    finally:
        with suppress(Exception):
            fs.invalidate_cache()


def _probes(store: Store) -> dict[str, Any]:
    """Root-level probe files left by an interrupted ``check_writable``."""
    try:
        entries = store.fs.ls(store.root, detail=True) if store.root else []
    except (FileNotFoundError, NotADirectoryError):
        return {}
    return {
        str(e["name"]): e
        for e in entries
        if isinstance(e, dict) and _PROBE_NAME.match(str(e.get("name", "")).rpartition("/")[2])
    }


def _names_ok(target: str, name: str) -> bool:
    try:
        validate_target(target)
        validate_name(name)
    except ValueError:
        return False
    return True


def take_inventory(store: Store) -> Inventory:
    """List the store (see the module docstring).

    Raises:
        StorageError: the listing failed.
    """
    root = store.root
    with translating("list", "objects", url=store.url):
        found = {
            **_find(store, layout.checkpoints_dir(root)),
            **_find(store, layout.blobs_dir(root)),
            **_probes(store),
        }
    objects: list[StoredObject] = []
    for path, info in found.items():
        rel = _relative(root, path)
        if rel is None or info.get("type", "file") != "file":
            continue
        objects.append(StoredObject(rel, int(info.get("size") or 0), modified_time(info)))
    manifests: dict[tuple[str, str], StoredObject] = {}
    blobs: dict[str, StoredObject] = {}
    rest: list[StoredObject] = []
    for obj in objects:
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
            and _names_ok(parts[1], parts[2])
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


def delete_stray(store: Store, path: str) -> None:
    """Remove the stray object at ``path`` (relative to the root); missing is fine.

    Raises:
        UsageError: ``path`` is not under ``checkpoints/`` or ``blobs/`` (or a root-level
            probe file), or is not plain.
        StorageError: the deletion failed.
    """
    parts = path.split("/")
    probe = len(parts) == 1 and _PROBE_NAME.match(parts[0]) is not None
    if (parts[0] not in (layout.CHECKPOINTS, layout.BLOBS) and not probe) or any(
        p in ("", ".", "..") for p in parts
    ):
        raise UsageError(f"refusing to delete {path!r}: not a stray of this store's layout")
    full = layout.join(store.root, *parts)
    with translating("delete", path, url=store.url), suppress(FileNotFoundError):
        store.fs.rm_file(full)


def prune_empty_folders(
    store: Store, *, older_than: float, keep: Iterable[tuple[str, str]] = ()
) -> int:
    """Remove empty folders under ``checkpoints/`` of a local store that were last
    modified at or before the POSIX time ``older_than``; returns how many.

    The folders of the checkpoints in ``keep`` (being created) and of their targets
    are kept whatever their age. Object stores have no folders; other file systems are
    left alone. Best effort: a folder that gains an entry meanwhile is not removed
    (``rmdir`` refuses).
    """
    if not store.is_local:
        return 0
    top = layout.checkpoints_dir(store.root)
    kept = {os.path.join(top, t, n) for t, n in keep} | {os.path.join(top, t) for t, _ in keep}
    removed = 0
    for dirpath, _dirs, _files in sorted(os.walk(top), key=lambda w: -len(w[0])):
        if dirpath == top or dirpath in kept:
            continue
        with suppress(OSError):
            if os.stat(dirpath).st_mtime <= older_than:
                os.rmdir(dirpath)
                removed += 1
    return removed
