"""Podman / CRI-O checkpoint archives taken apart member by member, and rebuilt bit-exactly.

A checkpoint archive (``podman container checkpoint --export``, the kubelet's
``checkpoint-<pod>_<namespace>-<container>-<time>.tar``) is a tar of ``config.dump``,
``spec.dump``, ``checkpoint/`` (CRIU's images), ``rootfs-diff.tar``, ``deleted.files``,
``devshm-checkpoint.tar``, ``volumes/`` and the like. :func:`split_archive` cuts an
uncompressed one into

- the data of every regular member, as a file ``archive/<member name>`` of an image
  folder (so the store chunks and deduplicates each member on its own), and
- the layout, ``cryostash-archive.json``: every byte that is not member data (headers,
  pax and long-name records, padding, the end-of-archive blocks) in order, with the
  BLAKE3 and size of the whole archive,

and :func:`rebuild_archive` writes the very same bytes back (checked against the recorded
BLAKE3). The podman engine restores from a rebuilt ``checkpoint.tar``; ``cryostash
export`` writes one.

Members are untrusted. Before anything is written, every member is checked: a name that
is absolute, holds ``..`` (or ``.``, or empty parts), a NUL, or repeats an earlier
member's (a leading ``./`` is dropped, and the folder ``./`` itself is the archive's
top: ``tar -C DIR -cf x.tar .`` writes it, as checkpointctl's tests do); a symbolic or
hard link; a device, FIFO or any type other than a regular file or folder; a sparse
member; a member larger than the limit; a size running past the end of the archive
(truncated); bytes other than zeros after the end-of-archive blocks, or no such blocks
-> :class:`~cryostash.errors.IntegrityError` naming the member. Nothing but regular
files and folders is ever created, with ``O_EXCL | O_NOFOLLOW``.

Nothing here touches the store or the catalog.
"""

from __future__ import annotations

import base64
import json
import os
import tarfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

import blake3

from cryostash.engines.archive_bounds import MAX_MEMBERS, MAX_META, MAX_PATH
from cryostash.errors import IntegrityError

#: The layout file in the image folder.
LAYOUT = "cryostash-archive.json"
#: The folder of the image folder holding the members' data.
MEMBERS = "archive"
FORMAT = "cryostash-archive/1"
BLOCK = 512
#: Default bound on one member's size (``import --max-member-size``).
DEFAULT_MAX_MEMBER = 64 << 30
#: Bounds on the non-data bytes around one member (headers, pax records, padding), the
#: number of members, a member's path (:mod:`cryostash.engines.archive_bounds`).
_COPY = 1 << 20
_REGULAR = (tarfile.REGTYPE, tarfile.AREGTYPE)


@dataclass(frozen=True)
class Member:
    """One member as the layout records it: the bytes before its data (``meta``), its
    name, and its data size and path in the image folder (``None`` for a folder)."""

    meta: bytes
    name: str
    size: int
    path: str | None
    mtime: int


@dataclass(frozen=True)
class Layout:
    """What :func:`split_archive` found: members in archive order, the end-of-archive
    bytes (zeros), the archive's size and BLAKE3, and where it came from."""

    members: tuple[Member, ...]
    trailer: int
    size: int
    digest: str
    extra: dict[str, Any] = field(default_factory=dict)

    def as_json(self) -> bytes:
        """The layout file's content."""
        return json.dumps(
            {
                "format": FORMAT,
                "size": self.size,
                "blake3": self.digest,
                "trailer": self.trailer,
                "members": [
                    {
                        "meta": base64.b64encode(m.meta).decode(),
                        "name": m.name,
                        "size": m.size,
                        "path": m.path,
                        "mtime": m.mtime,
                    }
                    for m in self.members
                ],
                **self.extra,
            },
            indent=1,
        ).encode()


def _refuse(what: str, name: str, why: str) -> IntegrityError:
    shown = name if len(name) <= 200 else f"{name[:200]}..."
    return IntegrityError(f"{what}: member {shown!r} {why}; nothing was imported")


def _clean_name(raw: str, what: str, *, folder: bool = False) -> str:
    """The member's name as a safe relative path (``./`` prefixes and a folder's trailing
    ``/`` dropped; ``""`` for the folder ``./``, the archive's top), or IntegrityError."""
    name = raw
    while name.startswith("./"):
        name = name[2:]
    if folder and name in ("", "."):
        return ""
    name = name.rstrip("/") if name.endswith("/") else name
    if not name or "\x00" in name or name.startswith("/"):
        raise _refuse(what, raw, "has an absolute or empty path")
    parts = name.split("/")
    if any(p in {"", ".", ".."} for p in parts):
        raise _refuse(what, raw, "has a path that is not plainly inside the archive (.., .)")
    try:
        name.encode("utf-8")
    except UnicodeEncodeError:
        raise _refuse(what, raw, "has a path that is not UTF-8") from None
    if any(len(p.encode()) > 255 for p in parts):
        raise _refuse(what, raw, "has a path component longer than 255 bytes")
    if len(name.encode()) > MAX_PATH:
        raise _refuse(what, raw, f"has a path longer than {MAX_PATH} bytes")
    return name


def _check(
    tar: tarfile.TarFile, size: int, what: str, max_member: int
) -> Iterator[tarfile.TarInfo]:
    """Every member, checked (see the module docstring)."""
    seen: dict[str, bool] = {}  # name -> is a folder
    implied: set[str] = set()  # folders that members are in
    count = 0
    while True:
        try:
            info = tar.next()
        except (tarfile.TarError, EOFError, OSError, UnicodeError, ValueError) as exc:
            raise IntegrityError(f"{what}: not a readable tar archive ({exc})") from None
        if info is None:
            return
        count += 1
        if count > MAX_MEMBERS:
            raise IntegrityError(f"{what}: more than {MAX_MEMBERS} members")
        raw = info.name
        if info.issym() or info.islnk():
            raise _refuse(what, raw, f"is a link (to {info.linkname!r}): links are refused")
        if info.ischr() or info.isblk() or info.isfifo():
            raise _refuse(what, raw, "is a device node or FIFO: only files and folders are taken")
        if info.issparse():
            raise _refuse(what, raw, "is a sparse file: sparse members are refused")
        if info.type not in (*_REGULAR, tarfile.DIRTYPE):
            raise _refuse(what, raw, f"has tar type {info.type!r}: only files and folders")
        name = _clean_name(raw, what, folder=info.isdir())
        if info.size > max_member:
            raise _refuse(what, raw, f"claims {info.size} bytes, over the {max_member}-byte limit")
        if info.offset_data + info.size > size:
            raise IntegrityError(
                f"{what}: truncated tar archive (member {raw!r} claims {info.size} bytes, "
                f"the archive ends {size - info.offset_data} bytes after its header)"
            )
        if name in seen or (not info.isdir() and name in implied):
            raise _refuse(what, raw, "appears twice")
        parent = name.rpartition("/")[0]
        while parent:
            if seen.get(parent) is False:
                raise _refuse(what, raw, f"is inside {parent!r}, which is a file")
            implied.add(parent)
            parent = parent.rpartition("/")[0]
        seen[name] = info.isdir()
        yield info


def split_archive(
    tar_path: Path,
    image_dir: Path,
    *,
    what: str,
    max_member: int = DEFAULT_MAX_MEMBER,
    digest: str | None = None,
) -> Layout:
    """Check the uncompressed tar ``tar_path``, then write its members under
    ``image_dir/archive/`` and the layout to ``image_dir/cryostash-archive.json``.

    ``what`` names the archive in messages. Every member is checked before any is written.
    ``digest``: the archive's BLAKE3 when the caller computed it while writing it (else
    it is read once more to compute it).

    Raises:
        IntegrityError: a member or the archive is refused (see the module docstring).
    """
    size = tar_path.stat().st_size
    if size == 0:
        raise IntegrityError(f"{what}: empty file, not a tar archive")
    try:
        tar = tarfile.open(tar_path, mode="r:")  # noqa: SIM115 (closed below)
    except (tarfile.TarError, EOFError, OSError, UnicodeError, ValueError) as exc:
        raise IntegrityError(f"{what}: not a readable tar archive ({exc})") from None
    with tar:
        infos = list(_check(tar, size, what, max_member))
    members: list[Member] = []
    with tar_path.open("rb") as src:
        pos = 0
        for info in infos:
            if info.offset_data - pos > MAX_META:
                raise IntegrityError(f"{what}: over {MAX_META} header bytes before {info.name!r}")
            meta = _read(src, pos, info.offset_data - pos, what)
            name = _clean_name(info.name, what, folder=info.isdir())
            regular = info.type in _REGULAR
            path = f"{MEMBERS}/{name}" if regular else None
            members.append(Member(meta, name, info.size if regular else 0, path, int(info.mtime)))
            pos = info.offset_data + (info.size if regular else 0)
        trailer = size - pos
        tail = _read(src, pos, min(trailer, MAX_META + 1), what)
        if trailer > MAX_META or tail.count(0) != len(tail):
            raise IntegrityError(f"{what}: bytes other than zeros after the last member")
        if trailer < (-pos % BLOCK) + 2 * BLOCK:
            raise IntegrityError(f"{what}: truncated tar archive (no end-of-archive blocks)")
        root = image_dir / MEMBERS
        root.mkdir(mode=0o700)
        for info, member in zip(infos, members, strict=True):
            target = root / member.name
            if member.path is None:
                target.mkdir(mode=0o700, exist_ok=True)
                continue
            target.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
            _copy_out(src, info.offset_data, member.size, target, what)
        digest = digest or _rehash(src, size)
    layout = Layout(tuple(members), trailer, size, digest)
    (image_dir / LAYOUT).write_bytes(layout.as_json())
    return layout


def _read(src: IO[bytes], offset: int, length: int, what: str) -> bytes:
    src.seek(offset)
    data = src.read(length)
    if len(data) != length:
        raise IntegrityError(f"{what}: truncated tar archive")
    return data


def _copy_out(src: IO[bytes], offset: int, length: int, target: Path, what: str) -> None:
    """Copy ``length`` bytes at ``offset`` into the new file ``target``."""
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
    fd = os.open(target, flags, 0o600)
    with os.fdopen(fd, "wb") as out:
        src.seek(offset)
        left = length
        while left:
            data = src.read(min(left, _COPY))
            if not data:
                raise IntegrityError(f"{what}: truncated tar archive")
            out.write(data)
            left -= len(data)


def _rehash(src: IO[bytes], size: int) -> str:
    """BLAKE3 of the whole archive (what a rebuild must reproduce)."""
    src.seek(0)
    hasher = blake3.blake3()
    left = size
    while left:
        data = src.read(min(left, _COPY))
        if not data:
            break
        hasher.update(data)
        left -= len(data)
    return str(hasher.hexdigest())


def read_layout(image_dir: Path) -> dict[str, Any]:
    """The layout file of ``image_dir``, parsed and checked.

    Raises:
        IntegrityError: missing, not JSON, or not a layout this version understands.
    """
    try:
        data = json.loads((image_dir / LAYOUT).read_bytes())
    except FileNotFoundError:
        raise IntegrityError(f"the checkpoint has no {LAYOUT}: it was not imported") from None
    except ValueError as exc:
        raise IntegrityError(f"{LAYOUT} is not valid JSON: {exc}") from None
    if not isinstance(data, dict) or data.get("format") != FORMAT:
        raise IntegrityError(f"{LAYOUT}: unknown format {data.get('format')!r}")
    return data


def rebuild_archive(image_dir: Path, out: IO[bytes]) -> dict[str, Any]:
    """Write the archive that was split into ``image_dir`` to ``out``, byte for byte.

    Returns the layout (``size``, ``blake3``, ``members``, and what the import recorded).

    Raises:
        IntegrityError: a member file is missing or of another size, or the bytes written
            do not have the recorded BLAKE3 (``out`` then holds them all the same).
    """
    layout = read_layout(image_dir)
    hasher = blake3.blake3()
    written = 0

    def put(data: bytes) -> None:
        nonlocal written
        hasher.update(data)
        out.write(data)
        written += len(data)

    for m in layout["members"]:
        put(base64.b64decode(m["meta"]))
        if m["path"] is None:
            continue
        path = image_dir / str(m["path"])
        try:
            with path.open("rb") as f:
                left = int(m["size"])
                while left:
                    data = f.read(min(left, _COPY))
                    if not data:
                        break
                    put(data)
                    left -= len(data)
                if left or f.read(1):
                    raise IntegrityError(f"member {m['name']!r} is not {m['size']} bytes")
        except FileNotFoundError:
            raise IntegrityError(f"member {m['name']!r} is missing from the checkpoint") from None
    put(b"\0" * int(layout["trailer"]))
    if written != layout["size"] or hasher.hexdigest() != layout["blake3"]:
        raise IntegrityError(
            f"the rebuilt archive is not the imported one ({written} bytes, BLAKE3 "
            f"{hasher.hexdigest()}; expected {layout['size']} bytes, {layout['blake3']})"
        )
    return layout
