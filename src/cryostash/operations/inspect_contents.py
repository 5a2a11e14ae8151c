"""``inspect --tree/--files/--memory``: a look inside a checkpoint's CRIU images.

:func:`look_inside` (also what :mod:`.diff` compares) fetches the few CRIU image files it needs
(:data:`~cryostash.engines.criu_contents.NEEDED`: process tree, descriptors, files,
mappings, pagemaps; never the pages) from the store, each chunk verified as a restore
verifies it, into a private scratch folder, and reads them with CRIU's pycriu
(:func:`~cryostash.engines.criu_contents.read_contents`). Nothing is restored.

With ``cmdline`` (``--cmdline``) or ``env`` (``--env``), each process's command line or
environment is read from its memory: only the chunks of its pages file that hold the
address range its ``mm`` image names (a page or two), fetched and verified. The
environment holds secrets: it is read only when asked, and never logged.
"""

from __future__ import annotations

import posixpath
from dataclasses import dataclass
from typing import Any

from cryostash.engines.criu_contents import NEEDED, Contents, ProcessMemory, read_contents
from cryostash.errors import UsageError
from cryostash.repository import Repository
from cryostash.store import Manifest, Store
from cryostash.transfer import datapath
from cryostash.transfer.chunking import may_be_zero
from cryostash.transfer.unpack import fetch_verified
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
    store: Store

    def pages(self, memory: ProcessMemory) -> FileEntry | None:
        """The manifest's entry of the pages file of ``memory``."""
        if memory.pages_file is None:
            return None
        path = posixpath.join(self.folder, memory.pages_file) if self.folder else memory.pages_file
        return next((f for f in self.manifest.files if f.path == path), None)


def _image_folder(info: CheckpointInfo, manifest: Manifest) -> str:
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
    repo: Repository, target: str, name: str, checkpoint_dir: str | None = None
) -> Look:
    """Fetch, verify and read the CRIU images of ``target``/``name`` (not its pages).

    Raises:
        CheckpointNotFound: no such checkpoint.
        UsageError: it holds no CRIU images.
        IntegrityError: a stored object is corrupt or missing, or an image is malformed
            (the file is named).
        EngineError: pycriu is not installed (``python -m cryostash.install.criu``).
    """
    info = repo.checkpoint(target, name, checkpoint_dir)
    store = repo.store(checkpoint_dir)
    manifest = repo.manifest(store, info)
    folder = _image_folder(info, manifest)
    wanted = [
        f for f in manifest.files
        if posixpath.dirname(f.path) == folder and NEEDED.fullmatch(posixpath.basename(f.path))
    ]
    with repo.scratch(f"restore-look-{target}-{name}") as scratch:
        datapath.unpack_image(repo.settings, store, wanted, scratch, jobs=repo.jobs)
        contents = read_contents(scratch / folder if folder else scratch)
    return Look(info, manifest, folder, contents, store)


def _read_range(store: Store, entry: FileEntry, offset: int, length: int) -> bytes:
    """``length`` bytes at ``offset`` of the stored file ``entry``: only the chunks that
    hold them are fetched (and verified)."""
    out, pos, end = bytearray(), 0, offset + length
    sizes = entry.chunk_sizes or (entry.size,)
    last = len(sizes) - 1
    for n, (digest, size) in enumerate(zip(entry.blobs, sizes, strict=True)):
        if pos < end and pos + size > offset:
            if may_be_zero(size, n == last) and digest == store.sealing.zero_name(size):
                data: bytes | memoryview = bytes(size)
            else:
                data = fetch_verified(store, digest, size, f"chunk {digest} of {entry.path}").plain
            out += data[max(offset - pos, 0) : min(end - pos, size)]
        pos += size
    return bytes(out)


def process_strings(look: Look, memory: ProcessMemory, span: tuple[int, int]) -> list[str]:
    """The NUL-separated strings at ``span`` of the memory of ``memory``'s process (its
    ``args`` or ``env``), decoded with replacement; [] when not dumped."""
    entry = look.pages(memory)
    if entry is None or span[1] <= span[0]:
        return []
    raw = b"".join(_read_range(look.store, entry, o, n) for o, n in memory.file_spans(span))
    return [s.decode("utf-8", "replace") for s in raw.split(b"\0") if s]


@dataclass(frozen=True)
class ContentsRequest:
    """The checkpoint to look into, and the sections wanted: the process ``tree``, the
    open ``files`` (descriptors, sockets, pipes), the ``memory`` mappings; ``cmdline`` and
    ``env`` add each process's command line and environment to the tree."""

    target: str
    name: str
    checkpoint_dir: str | None = None
    tree: bool = False
    files: bool = False
    memory: bool = False
    cmdline: bool = False
    env: bool = False


@dataclass(frozen=True)
class ContentsView:
    """The sections asked for (None: not asked), JSON-ready lists of dicts
    (:meth:`~cryostash.engines.criu_contents.Contents.tree_dict` and its siblings)."""

    target: str
    name: str
    tree: list[dict[str, Any]] | None = None
    files: list[dict[str, Any]] | None = None
    memory: list[dict[str, Any]] | None = None

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready form (``inspect --tree/--files/--memory --json``): target, name and
        the sections asked for, in this order."""
        out: dict[str, Any] = {"target": self.target, "name": self.name}
        for key in ("tree", "files", "memory"):
            value = getattr(self, key)
            if value is not None:
                out[key] = value
        return out


def inspect_contents(repo: Repository, request: ContentsRequest) -> ContentsView:
    """What the checkpoint's CRIU images say, the sections asked for (see
    :func:`look_inside`, whose errors it raises)."""
    look = look_inside(repo, request.target, request.name, request.checkpoint_dir)
    contents = look.contents
    tree = contents.tree_dict() if request.tree or request.cmdline or request.env else None
    for process in tree or ():
        memory = next((m for m in contents.memory if m.pid == process["pid"]), None)
        for wanted, key, shown in (
            (request.cmdline, "args", "cmdline"), (request.env, "env", "env")
        ):
            if wanted:
                span = getattr(memory, key) if memory else (0, 0)
                process[shown] = process_strings(look, memory, span) if memory else []
    return ContentsView(
        request.target,
        request.name,
        tree=tree,
        files=contents.files_dict() if request.files else None,
        memory=contents.memory_dict() if request.memory else None,
    )
