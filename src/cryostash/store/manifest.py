"""The manifest: the self-describing record of one checkpoint, and its JSON codec.

A manifest lists every file of the image directory (path, mode, size, digest, and the
ordered chunks that rebuild it: digest and plain size of each) plus who made the
checkpoint and how. It is written last and
create-only: its presence in the store is the commit marker. The catalog can be
rebuilt from manifests alone.

Encoding (format version 2): UTF-8 JSON, keys sorted, no insignificant white
space, one trailing newline; files sorted by path; each file's chunks as
``"chunks": [[digest, plain_size], ...]``. The same manifest always encodes to the
same bytes, so its BLAKE3 digest identifies it. Version 1 (one raw blob per file,
``"blobs": [digest]``) was never released and is not read: its blobs carry no encoding
tag.

Readers reject unknown format versions, garbage, truncation, missing or mistyped
fields, impossible sizes (a chunk larger than the chunker's maximum,
:data:`~cryostash.store.codec.MAX_PLAIN`: checked before anything is allocated for it),
and file paths that could escape the restore folder (absolute, ``..``,
empty components) with :class:`~cryostash.errors.IntegrityError`. Unknown extra
top-level keys are ignored (room for additive fields within version 2).
"""

from __future__ import annotations

import json
import posixpath
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from typing import Any

from cryostash.errors import IntegrityError
from cryostash.names import validate_name, validate_target
from cryostash.store.codec import MAX_PLAIN
from cryostash.store.layout import is_digest
from cryostash.types import FileEntry

FORMAT_VERSION = 2
_MAX_MODE = 0o7777


def validate_relpath(path: object) -> str:
    """Return ``path`` if it is a safe relative POSIX path inside a folder.

    Raises:
        ValueError: absolute, empty, containing ``..`` or ``.`` or empty components,
            or a NUL byte.
    """
    if not isinstance(path, str) or not path:
        raise ValueError(f"file path {path!r} is not a non-empty string")
    if path.startswith("/") or "\x00" in path:
        raise ValueError(f"file path {path!r} is absolute or contains NUL")
    parts = path.split("/")
    if any(part in {"", ".", ".."} for part in parts):
        raise ValueError(f"file path {path!r} is not a plain relative path")
    return path


def _validate_entry(entry: FileEntry) -> FileEntry:
    """Check ``entry``; return it with ``chunk_sizes`` filled in for a file of at most
    one chunk given without them."""
    validate_relpath(entry.path)
    where = f"file {entry.path!r}"
    for key, value in (("mode", entry.mode), ("size", entry.size)):
        if not isinstance(value, int) or isinstance(value, bool) or value < 0:
            raise ValueError(f"{where}: {key} {value!r} is not a non-negative integer")
    if entry.mode > _MAX_MODE:
        raise ValueError(f"{where}: mode {entry.mode:o} has bits beyond 7777")
    if not is_digest(entry.digest):
        raise ValueError(f"{where}: digest {entry.digest!r} is not a BLAKE3 hex digest")
    if not isinstance(entry.blobs, tuple) or not all(is_digest(b) for b in entry.blobs):
        raise ValueError(f"{where}: blobs {entry.blobs!r} are not BLAKE3 hex digests")
    if (entry.size == 0) != (len(entry.blobs) == 0):
        raise ValueError(f"{where}: size {entry.size} does not match {len(entry.blobs)} blobs")
    sizes = entry.chunk_sizes
    if not sizes and len(entry.blobs) <= 1:
        sizes = (entry.size,) if entry.blobs else ()
    if not isinstance(sizes, tuple) or len(sizes) != len(entry.blobs):
        raise ValueError(f"{where}: chunk sizes {sizes!r} do not match {len(entry.blobs)} chunks")
    if any(not isinstance(n, int) or isinstance(n, bool) or n <= 0 for n in sizes):
        raise ValueError(f"{where}: chunk sizes {sizes!r} are not positive integers")
    if max(sizes, default=0) > MAX_PLAIN:
        raise ValueError(
            f"{where}: a chunk of {max(sizes)} bytes is larger than any chunk cryostash "
            f"makes ({MAX_PLAIN} bytes)"
        )
    if sum(sizes) != entry.size:
        raise ValueError(f"{where}: chunk sizes add up to {sum(sizes)}, not {entry.size}")
    return entry if sizes == entry.chunk_sizes else replace(entry, chunk_sizes=sizes)


def _validate_files(files: Iterable[FileEntry]) -> tuple[FileEntry, ...]:
    ordered = tuple(sorted(files, key=lambda f: f.path))
    for entry in ordered:
        if not isinstance(entry, FileEntry):
            raise ValueError(f"{entry!r} is not a FileEntry")
    ordered = tuple(_validate_entry(entry) for entry in ordered)
    seen: set[str] = set()
    folders: set[str] = set()
    for entry in ordered:
        if entry.path in seen:
            raise ValueError(f"file path {entry.path!r} is listed twice")
        seen.add(entry.path)
        parent = posixpath.dirname(entry.path)
        while parent:
            folders.add(parent)
            parent = posixpath.dirname(parent)
    chunk_size: dict[str, int] = {}
    for entry in ordered:
        for digest, size in zip(entry.blobs, entry.chunk_sizes, strict=True):
            if chunk_size.setdefault(digest, size) != size:
                raise ValueError(f"chunk {digest} is recorded with two sizes")
    clash = sorted(seen & folders)
    if clash:
        raise ValueError(f"file path {clash[0]!r} is also the folder of another file")
    return ordered


def _utc(value: datetime) -> datetime:
    """``value`` in UTC; a naive datetime is taken to be UTC already (SQLite drops zones)."""
    if value.tzinfo is None:
        return value.replace(tzinfo=UTC)
    return value.astimezone(UTC)


@dataclass(frozen=True)
class Manifest:
    """The record of one checkpoint, as stored in ``manifest.json``.

    Construction validates and normalises: ``files`` are sorted by path and checked
    (safe relative paths, digests, sizes, no duplicates), ``created_at`` is converted
    to UTC (a naive value is taken as UTC). Invalid input raises ValueError.

    Attributes:
        target: the container or process tree this is a checkpoint of.
        name: the checkpoint name.
        engine: engine name (``criu``, ``runc``...).
        engine_version: version of the engine, if known.
        host: the host that made the checkpoint.
        kernel: ``uname -r`` of that host.
        created_at: when the checkpoint was started (UTC).
        labels: user labels.
        parent: name of the checkpoint this one derives from (same target), if any.
        stats: dump and upload statistics (JSON values).
        root_pid: PID of the root of the dumped process tree, if known.
        files: the files of the image directory, sorted by path (``chunk_sizes`` filled
            in for files of at most one chunk given without them).
        format_version: encoding version (only 2 is read and written).
    """

    target: str
    name: str
    engine: str
    engine_version: str | None
    host: str
    kernel: str
    created_at: datetime
    labels: Mapping[str, str] = field(default_factory=dict)
    parent: str | None = None
    stats: Mapping[str, Any] = field(default_factory=dict)
    root_pid: int | None = None
    files: tuple[FileEntry, ...] = ()
    format_version: int = FORMAT_VERSION

    def __post_init__(self) -> None:
        for key in ("target", "name", "engine", "host", "kernel"):
            if not isinstance(getattr(self, key), str):
                raise ValueError(f"{key} {getattr(self, key)!r} is not a string")
        validate_target(self.target)
        validate_name(self.name)
        for key in ("engine_version", "parent"):
            if getattr(self, key) is not None and not isinstance(getattr(self, key), str):
                raise ValueError(f"{key} {getattr(self, key)!r} is not a string or null")
        if not isinstance(self.created_at, datetime):
            raise ValueError(f"created_at {self.created_at!r} is not a datetime")
        rp = self.root_pid
        if rp is not None and (not isinstance(rp, int) or isinstance(rp, bool) or rp <= 0):
            raise ValueError(f"root_pid {rp!r} is not a positive integer")
        if not isinstance(self.labels, Mapping) or not all(
            isinstance(k, str) and isinstance(v, str) for k, v in self.labels.items()
        ):
            raise ValueError(f"labels {self.labels!r} are not a mapping of strings")
        if not isinstance(self.stats, Mapping):
            raise ValueError(f"stats {self.stats!r} are not a mapping")
        if self.format_version != FORMAT_VERSION:
            raise ValueError(f"format_version {self.format_version!r} is not {FORMAT_VERSION}")
        object.__setattr__(self, "created_at", _utc(self.created_at))
        object.__setattr__(self, "labels", dict(self.labels))
        object.__setattr__(self, "stats", dict(self.stats))
        object.__setattr__(self, "files", _validate_files(self.files))

    @property
    def size(self) -> int:
        """Total size of the image directory's files, in bytes."""
        return sum(f.size for f in self.files)

    @property
    def blob_digests(self) -> frozenset[str]:
        """Every blob (chunk) digest this checkpoint refers to (what gc must keep)."""
        return frozenset(d for f in self.files for d in f.blobs)

    @property
    def chunk_sizes(self) -> dict[str, int]:
        """Plain size of every distinct chunk this checkpoint refers to."""
        return {d: n for f in self.files for d, n in zip(f.blobs, f.chunk_sizes, strict=True)}

    def to_dict(self) -> dict[str, Any]:
        """The JSON object (plain dicts, lists, strings and numbers)."""
        return {
            "format_version": self.format_version,
            "target": self.target,
            "name": self.name,
            "engine": self.engine,
            "engine_version": self.engine_version,
            "host": self.host,
            "kernel": self.kernel,
            "created_at": self.created_at.isoformat(),
            "labels": dict(self.labels),
            "parent": self.parent,
            "stats": dict(self.stats),
            "root_pid": self.root_pid,
            "files": [
                {
                    "path": f.path,
                    "mode": f.mode,
                    "size": f.size,
                    "chunks": [[d, n] for d, n in zip(f.blobs, f.chunk_sizes, strict=True)],
                    "digest": f.digest,
                }
                for f in self.files
            ],
        }

    def to_bytes(self) -> bytes:
        """Canonical encoding: sorted keys, compact, UTF-8, trailing newline.

        Deterministic: equal manifests give equal bytes.

        Raises:
            ValueError: ``stats`` hold something JSON cannot encode (or NaN).
        """
        text = json.dumps(
            self.to_dict(),
            sort_keys=True,
            separators=(",", ":"),
            ensure_ascii=False,
            allow_nan=False,
        )
        return text.encode("utf-8") + b"\n"

    @classmethod
    def from_bytes(
        cls, data: bytes, *, target: str | None = None, name: str | None = None
    ) -> Manifest:
        """Decode and validate a manifest.

        Args:
            data: the bytes of ``manifest.json``.
            target, name: where the manifest was found, if known: used in messages,
                and the manifest must name the same checkpoint.

        Raises:
            IntegrityError: ``manifest of TARGET/NAME is corrupt: REASON`` (garbage,
                truncation, missing or mistyped field, unsafe path, wrong checkpoint),
                or an unknown format version, named in the message.
        """
        label = f"{target or '?'}/{name or '?'}"
        try:
            obj = json.loads(bytes(data).decode("utf-8"))
        except (UnicodeDecodeError, ValueError) as exc:
            raise IntegrityError(f"manifest of {label} is corrupt: not valid JSON ({exc})") from exc
        if not isinstance(obj, dict):
            raise IntegrityError(f"manifest of {label} is corrupt: not a JSON object")
        if target is None and name is None:
            label = f"{obj.get('target', '?')}/{obj.get('name', '?')}"
        version = obj.get("format_version")
        if version != FORMAT_VERSION:
            if isinstance(version, int) and not isinstance(version, bool):
                raise IntegrityError(
                    f"manifest of {label} has format version {version}, which this cryostash "
                    f"cannot read (it reads version {FORMAT_VERSION}): upgrade cryostash"
                )
            raise IntegrityError(f"manifest of {label} is corrupt: format_version {version!r}")
        try:
            manifest = cls._from_dict(obj)
        except (KeyError, TypeError, ValueError) as exc:
            reason = f"missing field {exc}" if isinstance(exc, KeyError) else str(exc)
            raise IntegrityError(f"manifest of {label} is corrupt: {reason}") from exc
        if (target is not None and manifest.target != target) or (
            name is not None and manifest.name != name
        ):
            raise IntegrityError(
                f"manifest of {label} is corrupt: it names checkpoint "
                f"{manifest.target}/{manifest.name}"
            )
        return manifest

    @classmethod
    def _from_dict(cls, obj: dict[str, Any]) -> Manifest:
        created = obj["created_at"]
        if not isinstance(created, str):
            raise ValueError(f"created_at {created!r} is not a string")
        created_at = datetime.fromisoformat(created)
        if created_at.tzinfo is None:
            raise ValueError(f"created_at {created!r} has no time zone")
        raw_files = obj["files"]
        if not isinstance(raw_files, list):
            raise ValueError("files is not a list")
        files = []
        for raw in raw_files:
            if not isinstance(raw, dict):
                raise ValueError(f"file entry {raw!r} is not an object")
            chunks = raw["chunks"]
            if not isinstance(chunks, list) or not all(
                isinstance(c, list) and len(c) == 2 for c in chunks
            ):
                raise ValueError(
                    f"file {raw.get('path')!r}: chunks is not a list of [digest, size] pairs"
                )
            files.append(
                FileEntry(
                    path=raw["path"],
                    mode=raw["mode"],
                    size=raw["size"],
                    blobs=tuple(c[0] for c in chunks),
                    digest=raw["digest"],
                    chunk_sizes=tuple(c[1] for c in chunks),
                )
            )
        labels = obj.get("labels", {})
        stats = obj.get("stats", {})
        if not isinstance(labels, dict) or not isinstance(stats, dict):
            raise ValueError("labels and stats must be objects")
        return cls(
            target=obj["target"],
            name=obj["name"],
            engine=obj["engine"],
            engine_version=obj.get("engine_version"),
            host=obj["host"],
            kernel=obj["kernel"],
            created_at=created_at,
            labels=labels,
            parent=obj.get("parent"),
            stats=stats,
            root_pid=obj.get("root_pid"),
            files=tuple(files),
        )


@dataclass(frozen=True)
class StoredManifest:
    """A manifest as read from a store: parsed, with its bytes and their BLAKE3 digest
    (the digest the catalog row records, binding row and manifest)."""

    manifest: Manifest
    data: bytes
    digest: str


class ManifestMismatch(IntegrityError):
    """A valid manifest whose BLAKE3 is not the one the catalog recorded (swapped or
    rewritten in the store). ``stored`` is what was read, for reports that go on."""

    def __init__(self, message: str, stored: StoredManifest) -> None:
        super().__init__(message)
        self.stored = stored


def load_manifest(
    data: bytes,
    *,
    target: str,
    name: str,
    expected: str | None = None,
    digest_of: Callable[[bytes], str] | None = None,
) -> StoredManifest:
    """Parse the manifest bytes ``data`` of ``target``/``name`` and check them against
    the digest ``expected`` (the catalog's; None or empty: not checked). ``digest_of``:
    the store's manifest digest (keyed in an encrypted store; default BLAKE3).

    Raises:
        IntegrityError: the bytes are not a valid manifest of this checkpoint.
        ManifestMismatch: valid, but not the manifest the catalog recorded
            (``manifest of T/N does not match the catalog (expected BLAKE3 X, got Y)``).
    """
    import blake3

    digest = blake3.blake3(data).hexdigest() if digest_of is None else digest_of(data)
    stored = StoredManifest(Manifest.from_bytes(data, target=target, name=name), data, digest)
    if expected and digest != expected:
        raise ManifestMismatch(
            f"manifest of {target}/{name} does not match the catalog (expected BLAKE3 "
            f"{expected}, got {digest})",
            stored,
        )
    return stored
