"""``diff``: what changed between two checkpoints of one target.

Processes, open files and sockets (from their images, :func:`.inspect_contents.look_inside`),
and the bytes of memory that differ, from the chunk lists of each process's pages file in
the manifests. Chunks are content-addressed: a chunk of the second checkpoint whose digest
the first one also has holds the same bytes, so the bytes that differ are those of the
chunks the first lacks (counted with multiplicity; cut by content, an unchanged region
keeps its chunks even when a change before it shifts it).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Hashable, Sequence
from dataclasses import dataclass
from typing import Any

from cryostash.operations.inspect_contents import Look, look_inside
from cryostash.repository import Repository
from cryostash.types import FileEntry


@dataclass(frozen=True)
class DiffRequest:
    """The two checkpoints of ``target`` to compare: ``name_a`` (older), ``name_b``."""

    target: str
    name_a: str
    name_b: str
    checkpoint_dir: str | None = None


@dataclass(frozen=True)
class CheckpointDiff:
    """What changed from ``a`` to ``b``: ``processes``, ``files`` and ``sockets`` each list
    what was ``added``, ``removed`` and ``changed``; ``memory`` the pages-file bytes of each
    side and ``bytes_differ`` (per process too, with the mappings added and removed);
    ``changed`` names the sections with a difference."""

    target: str
    a: str
    b: str
    processes: dict[str, list[Any]]
    files: dict[str, list[Any]]
    sockets: dict[str, list[Any]]
    memory: dict[str, Any]
    changed: tuple[str, ...]

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready form (``diff --json``)."""
        return {
            "target": self.target, "a": self.a, "b": self.b, "processes": self.processes,
            "files": self.files, "sockets": self.sockets, "memory": self.memory,
            "changed": list(self.changed),
        }


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


def _differing_bytes(old: FileEntry | None, new: FileEntry | None) -> int:
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
                "bytes_differ": _differing_bytes(fa, fb),
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


def diff(repo: Repository, request: DiffRequest) -> CheckpointDiff:
    """Compare the two checkpoints (see the module docstring).

    Raises:
        as :func:`~cryostash.operations.inspect_contents.look_inside`, for either one.
    """
    target, name_a, name_b = request.target, request.name_a, request.name_b
    a = look_inside(repo, target, name_a, request.checkpoint_dir)
    b = look_inside(repo, target, name_b, request.checkpoint_dir)
    files_a, files_b = a.contents.files_dict(), b.contents.files_dict()

    def fd_key(f: dict[str, Any]) -> Hashable:
        return (f["pid"], f["fd"])

    processes = _differences(a.contents.tree_dict(), b.contents.tree_dict(), lambda p: p["pid"])
    files = _differences(
        [f for f in files_a if f["kind"] != "socket"],
        [f for f in files_b if f["kind"] != "socket"], fd_key,
    )
    sockets = _differences(
        [f for f in files_a if f["kind"] == "socket"],
        [f for f in files_b if f["kind"] == "socket"], fd_key,
    )
    memory = _memory_diff(a, b)
    changed = [
        section for section, found in (
            ("processes", processes), ("files", files), ("sockets", sockets)
        ) if any(found.values())
    ]
    if memory["bytes_differ"] or memory["bytes_a"] != memory["bytes_b"] or any(
        r["mappings_added"] or r["mappings_removed"] for r in memory["processes"]
    ):
        changed.append("memory")
    return CheckpointDiff(target, name_a, name_b, processes, files, sockets, memory, tuple(changed))
