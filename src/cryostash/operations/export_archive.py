"""``cryostash export``: a podman checkpoint back out as a container checkpoint archive.

:func:`export_archive` writes the archive that ``podman container restore --import``
(and CRI-O, and ``checkpointctl``) reads:

- an imported checkpoint (``cryostash import``): the archive is rebuilt from its members
  and layout, byte for byte the tar that was imported (checked against the BLAKE3 recorded
  at import; :func:`~cryostash.engines.container_archive.rebuild_archive`);
- a checkpoint made with ``create --engine podman``: the ``checkpoint.tar`` podman
  exported at the dump.

Every file is fetched and verified (``restore``'s data path) into a private scratch
folder first. The tar is written as is (``none``), or compressed with ``gzip`` or
``zstd``; by default, as the imported archive was (``none`` for a created one). To a
file (missing or regular: a link, folder, device or FIFO is refused before anything is
fetched), the archive is written to a new 0600 temporary file beside it and renamed
when whole (an error leaves FILE as it was; :mod:`.output_file`); to a stream, as it is
made. An ``export`` event is recorded.
"""

from __future__ import annotations

import gzip
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

from cryostash.engines.archive_origin import ARCHIVE_ENGINES
from cryostash.engines.container_archive import LAYOUT, rebuild_archive
from cryostash.engines.podman import ARCHIVE
from cryostash.errors import IntegrityError, StorageError, UsageError
from cryostash.operations.output_file import check_target, output_file
from cryostash.repository import Repository
from cryostash.transfer import datapath

COMPRESSIONS = ("zstd", "gzip", "none")


@dataclass(frozen=True)
class Exported:
    """What :func:`export_archive` wrote: the compression, the tar's size, the bytes
    written, the number of members (None for a created checkpoint) and the time taken."""

    compression: str
    tar_bytes: int
    bytes_written: int
    members: int | None
    duration_s: float

    def as_dict(self) -> dict[str, Any]:
        return {
            "compression": self.compression,
            "tar_bytes": self.tar_bytes,
            "bytes_written": self.bytes_written,
            "members": self.members,
            "duration_s": round(self.duration_s, 6),
        }


class _Counter:
    """A write-only stream counting what goes through to ``raw``."""

    def __init__(self, raw: IO[bytes]) -> None:
        self.raw, self.count = raw, 0

    def write(self, data: bytes) -> int:
        self.raw.write(data)
        self.count += len(data)
        return len(data)

    def flush(self) -> None:
        self.raw.flush()


@dataclass(frozen=True)
class ExportRequest:
    """The checkpoint to export, and where: ``output`` (a file path; None or ``-``: the
    caller's stream), ``compress`` (``zstd``, ``gzip``, ``none``; default: as imported)."""

    target: str
    name: str
    output: str | None = None
    compress: str | None = None
    checkpoint_dir: str | None = None


def export_archive(
    repo: Repository, request: ExportRequest, stream: IO[bytes] | None = None
) -> Exported:
    """Write the checkpoint as a container checkpoint archive to ``request.output`` or,
    when it is None, to ``stream``.

    Raises:
        RestoreKeyRequired: a writer key of an encrypted store (it reads nothing).
        CheckpointNotFound: no such checkpoint.
        UsageError: ``cannot export a ENGINE checkpoint as a container archive`` (not a
            podman checkpoint), an unknown ``compress``, or ``output`` is a symbolic
            link, folder, device or FIFO.
        IntegrityError: a stored object is corrupt or missing, or the rebuilt archive is
            not the imported one.
        StorageError: ``output`` cannot be written.
    """
    target, name, compress = request.target, request.name, request.compress
    output = Path(request.output) if request.output not in (None, "-") else None
    if output is not None:
        check_target(output)
    store = repo.store(request.checkpoint_dir)
    store.unlock(restore=True)  # a writer key: exit 12
    if compress is not None and compress not in COMPRESSIONS:
        raise UsageError(f"--compress {compress}: expected one of {', '.join(COMPRESSIONS)}")
    info = repo.checkpoint(target, name, request.checkpoint_dir)
    if info.engine not in ARCHIVE_ENGINES:
        raise UsageError(f"cannot export a {info.engine} checkpoint as a container archive")
    manifest = repo.manifest(store, info)
    paths = {f.path for f in manifest.files}
    imported = LAYOUT in paths
    if not imported and ARCHIVE not in paths:
        raise IntegrityError(f"{target}/{name} holds neither {ARCHIVE} nor {LAYOUT}")
    if compress is None:
        recorded = manifest.stats.get("engine", {}) if isinstance(manifest.stats, dict) else {}
        compress = str(recorded.get("compression") or "none") if imported else "none"
        compress = compress if compress in COMPRESSIONS else "none"
    wanted = [f for f in manifest.files if imported or f.path == ARCHIVE]
    started = time.monotonic()
    with repo.scratch(f"restore-export-{target}-{name}") as scratch:
        datapath.unpack_image(
            repo.settings, store, wanted, scratch, jobs=repo.jobs,
            callback=repo.progress_for("download"),
        )
        if output is None:
            if stream is None:
                raise UsageError("export needs an output file or stream")
            try:
                done = _write(scratch, imported, stream, compress)
            except OSError as exc:  # e.g. the reading end of a pipe went away
                raise StorageError(f"cannot write the archive: {exc}") from exc
        else:
            done = _write_file(scratch, imported, output, compress)
    repo.catalog.record_event(
        host=repo.host,
        action="export",
        target=target,
        name=name,
        store_url=store.url,
        detail={"output": str(output) if output else "-", **done.as_dict()},
    )
    return Exported(
        done.compression, done.tar_bytes, done.bytes_written, done.members,
        time.monotonic() - started,
    )


def _write_file(scratch: Path, imported: bool, output: Path, compress: str) -> Exported:
    """:func:`_write` to a new file that becomes ``output`` when whole
    (:func:`~cryostash.operations.output_file.output_file`)."""
    with output_file(output) as f:
        return _write(scratch, imported, f, compress)


def _write(scratch: Path, imported: bool, raw: IO[bytes], compress: str) -> Exported:
    """The archive from the fetched files in ``scratch`` to ``raw``, compressed."""
    counter = _Counter(raw)
    stream: Any = counter  # a writable binary stream (duck-typed)
    sink: Any
    if compress == "gzip":
        sink = gzip.GzipFile(fileobj=stream, mode="wb", mtime=0)
    elif compress == "zstd":
        import zstandard

        sink = zstandard.ZstdCompressor(level=3).stream_writer(stream, closefd=False)
    else:
        sink = counter
    members: int | None = None
    if imported:
        layout = rebuild_archive(scratch, sink)
        tar_bytes, members = int(layout["size"]), len(layout["members"])
    else:
        with (scratch / ARCHIVE).open("rb") as f:
            shutil.copyfileobj(f, sink, 1 << 20)
        tar_bytes = (scratch / ARCHIVE).stat().st_size
    if sink is not counter:
        sink.close()
    counter.flush()
    return Exported(compress, tar_bytes, counter.count, members, 0.0)
