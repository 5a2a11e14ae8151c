"""``cryostash import``: a Podman / CRI-O checkpoint archive into the store.

:func:`import_archive`:

1. **Unpack, checked** (before the store or the catalog is touched): the archive (a file,
   or a binary stream such as stdin) is decompressed (gzip and zstd are recognised by
   their magic bytes; anything else is read as a plain tar) into a private scratch folder,
   then taken apart member by member by
   :func:`~cryostash.engines.container_archive.split_archive`, which refuses hostile
   members (``..``, absolute paths, links, devices, sparse or oversized members,
   truncated archives) with an :class:`~cryostash.errors.IntegrityError`. A corrupt
   gzip/zstd stream is an IntegrityError too. Nothing is written to the store or the
   catalog before this step has succeeded.
2. **Labels** from the archive (:func:`archive_labels`): ``container``, ``pod``,
   ``namespace`` (CRI-O's Kubernetes annotations in ``spec.dump``), ``image``,
   ``checkpointed`` (an ISO 8601 UTC time: ``config.dump``'s ``checkpointedTime``, else
   the kubelet's file name, else the newest member's time), ``source`` (``podman`` or
   ``cri-o``); labels given with ``--label`` win.
3. **Store** through :func:`cryostash.operations.create.create` with an engine that only
   hands over the prepared folder (:class:`PreparedArchive`): the usual reservation, chunking
   and deduplication (each member on its own), manifest, commit and ``checkpoint`` event.
   What is recorded of where it was made comes from the archive
   (:func:`~cryostash.engines.archive_origin.read_origin`): the engine (``crio`` for a
   CRI-O / kubelet archive, ``podman``, ``containerd``), the node's host name and kernel
   (this host's when the archive does not say), CRIU's version and dump statistics
   (frozen time...). ``cryostash restore`` of a ``podman`` one rebuilds the archive and runs
   ``podman container restore --import``; a ``crio``/``containerd`` one is restored by
   that engine, not here (:mod:`.restore` says so); ``cryostash export`` writes any back.

The image folder holds ``archive/<member>`` (the data of every regular member),
``cryostash-archive.json`` (the layout: every other byte, so the archive is rebuilt bit
for bit) and ``cryostash-podman.json`` (the podman engine's sidecar: container name, id,
image).
"""

from __future__ import annotations

import datetime as dt
import gzip
import json
import os
import re
import stat
import time
import zlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

import blake3

from cryostash.engines.archive_bounds import TarBounds, unpack_limit
from cryostash.engines.archive_origin import Origin, read_origin
from cryostash.engines.container_archive import (
    DEFAULT_MAX_MEMBER,
    LAYOUT,
    MEMBERS,
    Layout,
    split_archive,
)
from cryostash.engines.podman import SIDECAR
from cryostash.errors import IntegrityError, StorageError, UsageError
from cryostash.names import validate_name, validate_target
from cryostash.operations.create import CreateRequest, create
from cryostash.repository import Repository
from cryostash.transfer.progress import Progress
from cryostash.types import (
    Availability,
    CheckpointInfo,
    DumpOptions,
    DumpStats,
    RestoreOptions,
    RestoreResult,
)

GZIP_MAGIC = b"\x1f\x8b"
ZSTD_MAGIC = b"\x28\xb5\x2f\xfd"
_COPY = 1 << 20
#: ``checkpoint-<pod>_<namespace>-<container>-<RFC 3339 time>.tar`` (the kubelet's name).
KUBELET_NAME = re.compile(
    r"^checkpoint-(?P<pod>[^_/]+)_(?P<rest>.+)-(?P<time>\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d"
    r"(?:\.\d+)?(?:Z|[+-]\d\d:\d\d))\.tar(?:\.gz|\.zst)?$"
)


@dataclass(frozen=True)
class Prepared:
    """An archive unpacked and checked: its folder, layout, labels and sidecar."""

    folder: Path
    layout: Layout
    compression: str
    archive_bytes: int
    labels: dict[str, str]
    record: dict[str, Any]
    origin: Origin


def detect(head: bytes) -> str:
    """``gzip``, ``zstd`` or ``none`` from an archive's first bytes."""
    if head.startswith(GZIP_MAGIC):
        return "gzip"
    if head.startswith(ZSTD_MAGIC):
        return "zstd"
    return "none"


def decompress_into(
    source: IO[bytes], dest: Path, what: str, limit: int, callback: Progress | None = None
) -> tuple[str, int, str]:
    """Write the tar that ``source`` holds (plain, gzip or zstd) to ``dest``; returns
    (compression, bytes read from ``source``, BLAKE3 of the tar). ``callback`` is told the
    bytes read from ``source`` (and their total first, when ``source`` is a regular file).

    Raises:
        IntegrityError: corrupt or truncated compressed data, more than ``limit`` bytes
            once decompressed, or past another limit of
            :mod:`cryostash.engines.archive_bounds` (checked as the bytes come, before
            they are written).
        StorageError: ``dest`` cannot be written.
    """
    counted = _Counting(source, callback)
    if callback is not None:
        callback.set_size(_file_size(source))
    stream: Any = counted  # a readable binary stream (duck-typed)
    kind = detect(counted.peek(4))
    reader: Any = counted
    corrupt: tuple[type[BaseException], ...] = (EOFError, OSError, zlib.error, ValueError)
    if kind == "gzip":
        reader = gzip.GzipFile(fileobj=stream, mode="rb")
    elif kind == "zstd":
        import zstandard

        reader = zstandard.ZstdDecompressor().stream_reader(stream, read_across_frames=True)
        corrupt = (*corrupt, zstandard.ZstdError)
    bounds = TarBounds(what, limit)
    hasher = blake3.blake3()
    try:
        out = dest.open("xb")
    except OSError as exc:
        raise StorageError(f"cannot unpack {what} into {dest.parent}: {exc}") from exc
    with out:
        while True:
            try:
                data = reader.read(_COPY)
            except corrupt as exc:
                raise IntegrityError(f"{what}: corrupt or truncated {kind} data ({exc})") from None
            if not data:
                break
            bounds.feed(data, counted.count)
            hasher.update(data)
            try:
                out.write(data)
            except OSError as exc:
                raise StorageError(f"cannot unpack {what} into {dest.parent}: {exc}") from exc
    return kind, counted.count, str(hasher.hexdigest())


def _file_size(source: IO[bytes]) -> int | None:
    """The size of ``source`` when it is a regular file read from its start, else None."""
    try:
        st = os.fstat(source.fileno())
        return st.st_size if stat.S_ISREG(st.st_mode) and source.tell() == 0 else None
    except (OSError, ValueError, AttributeError):  # no file descriptor: a stream
        return None


class _Counting:
    """A read-only stream counting the bytes read (telling ``callback``), with one
    look-ahead."""

    def __init__(self, raw: IO[bytes], callback: Progress | None = None) -> None:
        self.raw, self.count, self._ahead, self._callback = raw, 0, b"", callback

    def peek(self, n: int) -> bytes:
        while len(self._ahead) < n:
            more = self.raw.read(n - len(self._ahead))
            if not more:
                break
            self._ahead += more
        return self._ahead[:n]

    def read(self, n: int = -1) -> bytes:
        if self._ahead:
            data, self._ahead = self._ahead, b""
            if n is not None and n >= 0 and len(data) > n:
                data, self._ahead = data[:n], data[n:]
            elif n is None or n < 0 or len(data) < n:
                data += self.raw.read(-1 if n is None or n < 0 else n - len(data))
        else:
            data = self.raw.read(n)
        self.count += len(data)
        if self._callback is not None and data:
            self._callback.relative_update(len(data))
        return data

    def readable(self) -> bool:
        return True


def _json(folder: Path, name: str) -> dict[str, Any]:
    """A JSON member of the archive (``config.dump``, ``spec.dump``), or {}."""
    try:
        data = json.loads((folder / MEMBERS / name).read_bytes())
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def _iso(value: str) -> str | None:
    """An RFC 3339 time (Go writes nanoseconds) as ISO 8601 UTC to the second, or None."""
    text = re.sub(r"(\.\d{1,6})\d*", r"\1", value.strip()).replace("Z", "+00:00")
    try:
        when = dt.datetime.fromisoformat(text)
    except ValueError:
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=dt.UTC)
    return when.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def archive_labels(folder: Path, layout: Layout, filename: str | None) -> dict[str, str]:
    """The labels an archive carries (see the module docstring)."""
    config, spec = _json(folder, "config.dump"), _json(folder, "spec.dump")
    notes = spec.get("annotations") if isinstance(spec.get("annotations"), dict) else {}
    assert isinstance(notes, dict)
    manager = str(notes.get("io.container.manager") or "")
    labels: dict[str, str] = {"source": "cri-o" if manager == "cri-o" else "podman"}
    for key, value in (
        ("container", notes.get("io.kubernetes.container.name") or config.get("name")),
        ("pod", notes.get("io.kubernetes.pod.name")),
        ("namespace", notes.get("io.kubernetes.pod.namespace")),
        ("image", config.get("rootfsImageName") or config.get("rootfsImage")),
    ):
        if isinstance(value, str) and value:
            labels[key] = value
    when = None
    if isinstance(config.get("checkpointedTime"), str):
        when = _iso(config["checkpointedTime"])
    match = KUBELET_NAME.match(os.path.basename(filename or ""))
    if when is None and match:
        when = _iso(match.group("time"))
    if match and "pod" not in labels:
        labels["pod"] = match.group("pod")
    if when is None and layout.members:
        newest = max(m.mtime for m in layout.members)
        when = dt.datetime.fromtimestamp(newest, dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    if when:
        labels["checkpointed"] = when
    return labels


def prepare(
    source: IO[bytes], folder: Path, *, what: str, filename: str | None,
    max_member: int = DEFAULT_MAX_MEMBER, callback: Progress | None = None,
) -> Prepared:
    """Unpack and check ``source`` into ``folder/image`` (see the module docstring, 1-2);
    ``callback``: progress over the bytes read from ``source``.

    Raises:
        IntegrityError: the archive or one of its members is refused.
        StorageError: the scratch folder cannot be written.
    """
    tar = folder / "archive.tar"
    kind, read, digest = decompress_into(
        source, tar, what, limit=unpack_limit(folder), callback=callback
    )
    image = folder / "image"
    image.mkdir(mode=0o700)
    layout = split_archive(tar, image, what=what, max_member=max_member, digest=digest)
    tar.unlink()
    labels = archive_labels(image, layout, filename)
    config = _json(image, "config.dump")
    record: dict[str, Any] = {
        "container_name": config.get("name"),
        "container_id": config.get("id"),
        "image": labels.get("image"),
        "image_id": config.get("rootfsImageID") or config.get("rootfsImageRef"),
        "options": [],
        "imported": {"archive": filename or "-", "compression": kind},
    }
    (image / SIDECAR).write_text(json.dumps(record, indent=1))
    return Prepared(image, layout, kind, read, labels, record, read_origin(image / MEMBERS))


class PreparedArchive:
    """The "engine" of an import: its dump moves a prepared folder into the image folder
    (same file system: both are under the scratch root). Recorded as the engine that made
    the archive (``crio``, ``podman``, ``containerd``), with the archive's node."""

    def __init__(self, prepared: Prepared) -> None:
        self.prepared = prepared
        self.name = prepared.origin.engine

    def available(self) -> Availability:
        return Availability(ok=True)

    def dump(self, locator: str, image_dir: Path, options: DumpOptions) -> DumpStats:
        started = time.monotonic()
        p, origin = self.prepared, self.prepared.origin
        for entry in (MEMBERS, LAYOUT, SIDECAR):
            os.rename(p.folder / entry, image_dir / entry)
        criu = f" (CRIU {origin.criu_version})" if origin.criu_version else ""
        return DumpStats(
            duration_s=time.monotonic() - started,
            root_pid=None,
            engine_version=f"imported {p.labels.get('source', 'podman')} archive{criu}",
            host=origin.host,
            kernel=origin.kernel,
            details={
                **origin.details(),
                "imported": p.record["imported"]["archive"],
                "compression": p.compression,
                "archive_bytes": p.archive_bytes,
                "tar_bytes": p.layout.size,
                "tar_blake3": p.layout.digest,
                "members": len(p.layout.members),
            },
        )

    def restore(self, image_dir: Path, options: RestoreOptions) -> RestoreResult:
        raise UsageError("an import has no restore of its own: restore with --engine podman")


@dataclass(frozen=True)
class ImportRequest:
    """The archive to import, and as what.

    Attributes:
        target, name: the checkpoint to make.
        filename: the archive's path (read unless the caller hands a stream over; it
            names the archive in messages and gives the kubelet's labels); None: a stream.
        labels: added to (and winning over) the archive's own.
        checkpoint_dir: the store, when not the default one.
        max_member: the largest member accepted, in bytes.
    """

    target: str
    name: str
    filename: str | None = None
    labels: dict[str, str] = field(default_factory=dict)
    checkpoint_dir: str | None = None
    max_member: int = DEFAULT_MAX_MEMBER


def import_archive(
    repo: Repository, request: ImportRequest, source: IO[bytes] | None = None
) -> CheckpointInfo:
    """Import the checkpoint archive read from ``source`` (default: the file
    ``request.filename``) as ``request.target``/``request.name``.

    Raises:
        InvalidName: bad target or name (nothing is read).
        UsageError: no source, or ``cannot read FILE: REASON``.
        IntegrityError: the archive is corrupt, truncated or hostile (nothing is written
            to the store or the catalog).
        CheckpointExists: ``target``/``name`` exists.
        StorageError, CatalogError: as for ``create`` (what was written is undone).
    """
    target, name, filename = request.target, request.name, request.filename
    validate_target(target)
    validate_name(name)
    if source is None:
        if filename is None:
            raise UsageError("import needs an archive file or stream")
        try:
            source = Path(filename).open("rb")  # noqa: SIM115 - closed below
        except OSError as exc:
            raise UsageError(f"cannot read {filename}: {exc.strerror or exc}") from None
    what = filename or "the archive on stdin"
    with source, repo.scratch(f"create-import-{target}-{name}") as scratch:
        with repo.tracking("import") as callback:
            prepared = prepare(
                source, scratch, what=what, filename=filename, max_member=request.max_member,
                callback=callback,
            )
        return create(
            repo,
            CreateRequest(
                target,
                name,
                locator=filename or "-",
                engine=prepared.origin.engine,
                leave_running=True,  # nothing was stopped: nothing to give back on failure
                checkpoint_dir=request.checkpoint_dir,
                labels={**prepared.labels, **request.labels},
            ),
            engine=PreparedArchive(prepared),
        )
