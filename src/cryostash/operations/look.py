"""A look inside checkpoints: ``inspect --tree/--files/--memory`` and ``diff``.

:func:`look_inside` fetches the few CRIU image files it needs
(:data:`~cryostash.engines.criu_contents.NEEDED`: process tree, descriptors, files,
mappings, pagemaps; never the pages) from the store, each chunk verified as a restore
verifies it, into a private scratch folder, and reads them with CRIU's pycriu
(:func:`~cryostash.engines.criu_contents.read_contents`). Nothing is restored.

:func:`diff_checkpoints` compares two checkpoints of one target: processes, open files
and sockets (from their images), and the bytes of memory that differ, from the chunk
lists of each process's pages file in the manifests. Chunks are content-addressed: a
chunk of the second checkpoint whose digest the first one also has holds the same bytes,
so the bytes that differ are those of the chunks the first lacks (counted with
multiplicity; cut by content, an unchanged region keeps its chunks even when a change
before it shifts it).
"""

from __future__ import annotations

import posixpath
from collections import Counter
from collections.abc import Callable, Hashable, Sequence
from dataclasses import dataclass
from typing import Any

from cryostash.engines.criu_contents import NEEDED, Contents, ProcessMemory, read_contents
from cryostash.errors import UsageError
from cryostash.manager.manager import CheckpointManager
from cryostash.store import Manifest
from cryostash.transfer import datapath
from cryostash.transfer.scratch import private_scratch
from cryostash.types import CheckpointInfo, FileEntry


@dataclass(frozen=True)
class Look:
    """A checkpoint's catalog row, manifest, the folder of its CRIU images in the manifest
    (``""`` at the top, ``checkpoint`` for an imported container archive) and what the
    images say."""

    info: CheckpointInfo
    manifest: Manifest
    folder: str
    contents: Contents

    def pages(self, memory: ProcessMemory) -> FileEntry | None:
        """The manifest's entry of the pages file of ``memory``."""
        if memory.pages_file is None:
            return None
        path = posixpath.join(self.folder, memory.pages_file) if self.folder else memory.pages_file
        return next((f for f in self.manifest.files if f.path == path), None)


def image_folder(info: CheckpointInfo, manifest: Manifest) -> str:
    """The folder of the manifest that holds CRIU's ``pstree.img``.

    Raises:
        UsageError: the checkpoint holds no CRIU images as files (e.g. a podman checkpoint
            made with ``create``, stored as one archive).
    """
    found = sorted(
        (posixpath.dirname(f.path) for f in manifest.files
         if posixpath.basename(f.path) == "pstree.img"),
        key=lambda d: (d.count("/"), d),
    )
    if not found:
        raise UsageError(
            f"{info.target}/{info.name} holds no CRIU images to look into "
            f"(a {info.engine} checkpoint stored without pstree.img)"
        )
    return found[0]


def look_inside(
    mgr: CheckpointManager, target: str, name: str, checkpoint_dir: str | None = None
) -> Look:
    """Fetch, verify and read the CRIU images of ``target``/``name`` (not its pages).

    Raises:
        CheckpointNotFound: no such checkpoint.
        UsageError: it holds no CRIU images.
        IntegrityError: a stored object is corrupt or missing, or an image is malformed
            (the file is named).
        EngineError: pycriu is not installed (``python -m cryostash.install.criu``).
    """
    view = mgr.inspect(target, name, checkpoint_dir)
    folder = image_folder(view.info, view.manifest)
    wanted = [
        f for f in view.manifest.files
        if posixpath.dirname(f.path) == folder and NEEDED.fullmatch(posixpath.basename(f.path))
    ]
    store = mgr.store(checkpoint_dir)
    with private_scratch(mgr.settings.scratch_dir, f"restore-look-{target}-{name}") as scratch:
        datapath.unpack_image(mgr.settings, store, wanted, scratch, jobs=mgr.jobs)
        contents = read_contents(scratch / folder if folder else scratch)
    return Look(view.info, view.manifest, folder, contents)


def _differences(
    old: Sequence[dict[str, Any]], new: Sequence[dict[str, Any]],
    key: Callable[[dict[str, Any]], Hashable],
) -> dict[str, list[Any]]:
    """Items added, removed and changed (``{"key", "a", "b"}``) between ``old`` and ``new``."""
    a, b = {key(x): x for x in old}, {key(x): x for x in new}
    return {
        "added": [b[k] for k in b if k not in a],
        "removed": [a[k] for k in a if k not in b],
        "changed": [{"a": a[k], "b": b[k]} for k in a if k in b and a[k] != b[k]],
    }


def _chunks(entry: FileEntry | None) -> list[tuple[str, int]]:
    if entry is None:
        return []
    sizes = entry.chunk_sizes or (entry.size,)
    return list(zip(entry.blobs, sizes, strict=True))


def differing_bytes(old: FileEntry | None, new: FileEntry | None) -> int:
    """The bytes of ``new`` in chunks that ``old`` does not hold (with multiplicity)."""
    have = Counter(digest for digest, _ in _chunks(old))
    differ = 0
    for digest, size in _chunks(new):
        if have[digest] > 0:
            have[digest] -= 1
        else:
            differ += size
    return differ


def _memory_diff(a: Look, b: Look) -> dict[str, Any]:
    old = {m.pid: m for m in a.contents.memory}
    new = {m.pid: m for m in b.contents.memory}
    rows = []
    for pid in sorted(old.keys() | new.keys()):
        ma, mb = old.get(pid), new.get(pid)
        fa, fb = (a.pages(ma) if ma else None), (b.pages(mb) if mb else None)
        spans_a = {(v.start, v.end, v.prot, v.name) for v in ma.mappings} if ma else set()
        spans_b = {(v.start, v.end, v.prot, v.name) for v in mb.mappings} if mb else set()
        rows.append(
            {
                "pid": pid,
                "bytes_a": fa.size if fa else 0,
                "bytes_b": fb.size if fb else 0,
                "bytes_differ": differing_bytes(fa, fb),
                "mappings_added": [_span(s) for s in sorted(spans_b - spans_a)],
                "mappings_removed": [_span(s) for s in sorted(spans_a - spans_b)],
            }
        )
    return {
        "bytes_a": sum(r["bytes_a"] for r in rows),
        "bytes_b": sum(r["bytes_b"] for r in rows),
        "bytes_differ": sum(r["bytes_differ"] for r in rows),
        "processes": rows,
    }


def _span(span: tuple[int, int, str, str]) -> dict[str, Any]:
    start, end, prot, name = span
    return {"start": start, "end": end, "size": end - start, "prot": prot, "name": name}


def diff_checkpoints(
    mgr: CheckpointManager, target: str, name_a: str, name_b: str,
    checkpoint_dir: str | None = None,
) -> dict[str, Any]:
    """What changed from ``target``/``name_a`` to ``target``/``name_b`` (JSON-ready).

    ``processes``, ``files`` and ``sockets`` each list what was ``added``, ``removed`` and
    ``changed``; ``memory`` the pages-file bytes of each side and ``bytes_differ`` (per
    process too, with the mappings added and removed); ``changed`` names the sections
    with a difference.

    Raises:
        as :func:`look_inside`, for either checkpoint.
    """
    a = look_inside(mgr, target, name_a, checkpoint_dir)
    b = look_inside(mgr, target, name_b, checkpoint_dir)
    files_a, files_b = a.contents.files_dict(), b.contents.files_dict()

    def fd_key(f: dict[str, Any]) -> Hashable:
        return (f["pid"], f["fd"])

    out: dict[str, Any] = {
        "target": target,
        "a": name_a,
        "b": name_b,
        "processes": _differences(
            a.contents.tree_dict(), b.contents.tree_dict(), lambda p: p["pid"]
        ),
        "files": _differences(
            [f for f in files_a if f["kind"] != "socket"],
            [f for f in files_b if f["kind"] != "socket"], fd_key,
        ),
        "sockets": _differences(
            [f for f in files_a if f["kind"] == "socket"],
            [f for f in files_b if f["kind"] == "socket"], fd_key,
        ),
        "memory": _memory_diff(a, b),
    }
    changed = [
        section for section in ("processes", "files", "sockets")
        if any(out[section].values())
    ]
    memory = out["memory"]
    if memory["bytes_differ"] or memory["bytes_a"] != memory["bytes_b"] or any(
        r["mappings_added"] or r["mappings_removed"] for r in memory["processes"]
    ):
        changed.append("memory")
    out["changed"] = changed
    return out
