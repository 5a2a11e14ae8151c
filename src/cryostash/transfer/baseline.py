"""The image of a running process's last checkpoint, kept so that its next checkpoint
proves its unchanged chunks by comparing bytes instead of cutting and hashing them.

Live migration (``operations/migrate.py``) checkpoints a running process (pre-copy, the
process keeps running), then again with the process stopped: the final checkpoint, on
the critical path of the downtime. Most of its bytes did not change in between. A
:class:`Baseline` holds the files of the last pre-copy's image and the chunks its pack
cut and named (:class:`KeptImage`); the next pack chunks each file also present there
under the same path with :func:`~cryostash.transfer.resync.rechunk`: a chunk whose bytes
are equal (memcmp) to a kept chunk's is not cut or hashed again and takes its name,
the others are cut and hashed as usual. The result is exactly the full chunking.

What may be trusted, and why:

- The kept files are the dump's own files, as cryostash packed them: moved (renamed, not
  copied) out of the create's scratch folder after its checkpoint was committed, made
  0600, in a private (0700), ``flock``-ed scratch folder of their own
  (:func:`~cryostash.transfer.scratch.private_scratch`, named ``create-...-baseline-...``
  so that ``gc`` removes it if its owner died). They are never compared with the store.
- The names are reused only for the store that named them (the same URL and the same
  :class:`~cryostash.store.sealing.Sealing` object: an encrypted store's chunk names
  are keyed, and the same key named the kept chunks) and the same chunk parameters
  (:meth:`KeptImage.serves`); otherwise the pack is a full one.
- A reused name still goes through the catalog like any other (its ``reserve``): the
  kept checkpoint's committed row holds it, so the store has it; if the catalog did not
  know it, it is uploaded from the new bytes, which are proven equal.

The folder lives from the first :meth:`Baseline.keep` to :meth:`Baseline.close` (or the
end of its ``with`` block), which removes it, whatever happened: the migration closes it
when it ends, whether it succeeded or failed. A baseline that cannot keep an image (a
rename fails) is left empty, with a warning: the next pack is a full one.
"""

from __future__ import annotations

import contextlib
import logging
import mmap
import os
import shutil
import tempfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

from cryostash.store import Store
from cryostash.store.sealing import Sealing
from cryostash.transfer.chunking import ChunkParams
from cryostash.transfer.resync import Reference
from cryostash.transfer.scratch import private_scratch
from cryostash.transfer.wholehash import State
from cryostash.types import FileEntry

log = logging.getLogger(__name__)


class Packed(Protocol):
    """What :meth:`Baseline.keep` reads of a pack's result
    (:class:`~cryostash.transfer.pack.PackResult` is one): the baseline depends on the
    shape, not on the pack module, which imports this one."""

    @property
    def entries(self) -> tuple[FileEntry, ...]: ...

    @property
    def params(self) -> ChunkParams: ...

    @property
    def states(self) -> Mapping[str, Sequence[State]]: ...


@dataclass(frozen=True)
class KeptImage:
    """An image folder as a pack chunked it: ``files`` by relative path, named by the
    store ``store_url`` with ``sealing``, cut with ``params``; ``states``: the whole-file
    hash states the pack recorded, by path (:mod:`~cryostash.transfer.wholehash`)."""

    folder: Path
    files: Mapping[str, FileEntry]
    store_url: str
    sealing: Sealing
    params: ChunkParams
    states: Mapping[str, Sequence[State]] = field(default_factory=dict)

    def serves(self, store: Store, params: ChunkParams) -> bool:
        """True if its chunk names are names in ``store`` for chunks cut with ``params``."""
        return (
            store.url == self.store_url and store.sealing is self.sealing and params == self.params
        )

    def reference(self, rel: str) -> Reference | None:
        """The kept file ``rel`` (mapped read-only) and its chunks; None when none was
        kept under that path, or it cannot be read (logged: the file is packed in full)."""
        entry = self.files.get(rel)
        if entry is None:
            return None
        sizes = entry.chunk_sizes or ((entry.size,) if entry.blobs else ())
        try:
            chunks = list(zip(sizes, entry.blobs, strict=True))
            states = self.states.get(rel, ())
            return Reference(_map(self.folder / rel), chunks, entry.digest, states)
        except (OSError, ValueError) as exc:
            log.warning("kept file %s not used, packed in full: %s", rel, exc)
            return None


def _map(path: Path) -> bytes | mmap.mmap:
    """The bytes of ``path``, mapped read-only (an empty file: ``b""``)."""
    fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC | os.O_NOFOLLOW)
    try:
        size = os.fstat(fd).st_size
        return mmap.mmap(fd, size, access=mmap.ACCESS_READ) if size else b""
    finally:
        os.close(fd)


class Baseline:
    """Holds at most one :class:`KeptImage` (``image``) in a private scratch folder under
    ``root``, made on the first :meth:`keep` (see the module docstring). Not thread-safe.

    Args:
        root: the scratch root (the creates' own: a kept image is renamed, not copied).
        purpose: names the folder: ``create-PURPOSE-baseline-<random>``.
    """

    def __init__(self, root: Path, purpose: str) -> None:
        self._root, self._purpose = Path(root), purpose
        self._stack: contextlib.ExitStack | None = None
        self._folder: Path | None = None
        self.image: KeptImage | None = None

    def keep(self, image_dir: Path, packed: Packed, store: Store) -> None:
        """Move the files of ``image_dir``, just packed into ``store`` as ``packed``,
        into this baseline in place of the image it held (removed). Never raises: on
        failure the baseline holds nothing (warned)."""
        old, self.image = self.image, None
        slot: Path | None = None
        try:
            if self._folder is None:
                stack = contextlib.ExitStack()
                purpose = f"create-{self._purpose}-baseline"
                self._folder = stack.enter_context(private_scratch(self._root, purpose))
                self._stack = stack
            slot = Path(tempfile.mkdtemp(prefix="image-", dir=self._folder))
            for entry in sorted(image_dir.iterdir()):
                entry.rename(slot / entry.name)
            for folder, _, names in os.walk(slot):  # the pack refused symbolic links
                for name in names:
                    os.chmod(os.path.join(folder, name), 0o600)
            files = {entry.path: entry for entry in packed.entries}
            self.image = KeptImage(
                slot, files, store.url, store.sealing, packed.params, packed.states
            )
        except OSError as exc:
            log.warning("the image in %s is not kept (the next checkpoint of this process "
                        "is chunked and hashed in full): %s", image_dir, exc)
            if slot is not None:
                shutil.rmtree(slot, ignore_errors=True)
        finally:
            if old is not None:
                shutil.rmtree(old.folder, ignore_errors=True)

    def make_room(self) -> None:
        """Before a dump that will be compared with the kept image: write a scratch file
        as large as that image, then remove it. Never raises (a failure is logged).

        The kept image holds page cache that a dump would otherwise have reused: without
        it kept, the last pre-copy's image was removed just before, and the kernel hands
        its just-freed pages to the next dump. Kept, the dump takes other free pages,
        which on a VM with free page reporting (virtio-balloon, Firecracker) the host
        has taken back and must provide again on first touch: measured on this
        project's CI VM, a 512 MiB final dump took 1.1-3.9 s instead of 0.3-0.4 s. The
        file written and removed here leaves that many just-freed pages for the dump, at
        the cost of writing them before it (while the process still runs: 0.1-0.2 s on
        a host, 2-2.5 s for 512 MiB on that VM)."""
        image = self.image
        if image is None:
            return
        size = sum(entry.size for entry in image.files.values())
        path = image.folder.parent / "room.tmp"
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o600)
            try:
                block = bytes(1 << 20)
                for _ in range(0, size, len(block)):
                    os.write(fd, block)
            finally:
                os.close(fd)
                path.unlink(missing_ok=True)
        except OSError as exc:
            log.warning("could not make room for the next dump: %s", exc)

    def close(self) -> None:
        """Remove the folder and what it holds (nothing if none was made). Idempotent."""
        self.image = None
        stack, self._stack, self._folder = self._stack, None, None
        if stack is not None:
            stack.close()

    def __enter__(self) -> Baseline:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
