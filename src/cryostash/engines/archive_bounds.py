"""The limits of an imported checkpoint archive, checked while it is unpacked.

An archive is untrusted, and so is its size: :class:`TarBounds` walks the tar headers of
the decompressed stream as it is written to scratch (before :mod:`tarfile` or
:func:`~cryostash.engines.container_archive.split_archive` reads anything), and refuses,
with an :class:`~cryostash.errors.IntegrityError` (exit 7), an archive

- of more than :data:`MAX_MEMBERS` members;
- with an extended header (pax ``x``/``g``, GNU long name ``L``/``K``) over
  :data:`MAX_META` bytes (:mod:`tarfile` would read it into memory whole);
- with more than :data:`MAX_META` bytes after its end-of-archive block (``/dev/zero``
  read as a plain tar is one endless end-of-archive);
- that expands more than :data:`MAX_RATIO` times once past :data:`RATIO_FREE` bytes (a
  gzip or zstd bomb);
- larger once decompressed than the ``limit`` its caller gives (what the scratch file
  system can hold: see :func:`unpack_limit`);
- with a header whose checksum is wrong (not a tar archive).

Member paths are bounded by :data:`MAX_PATH` bytes where they are checked
(:mod:`cryostash.engines.container_archive`). docs/security.md lists these values.
"""

from __future__ import annotations

import shutil
from pathlib import Path

from cryostash.errors import IntegrityError

#: The most members an archive may have (a podman checkpoint has a few hundred).
MAX_MEMBERS = 20_000
#: The largest extended header (pax record set, GNU long name) and the most bytes of
#: padding after the end-of-archive block.
MAX_META = 1 << 20
#: The longest member path, in bytes (the scratch folder's path comes on top of it).
MAX_PATH = 1024
#: How many times an archive may expand when decompressed ...
MAX_RATIO = 500
#: ... once more than this many bytes were decompressed (small archives of text compress
#: very well).
RATIO_FREE = 64 << 20
#: Room left free on the scratch file system: this, or a twentieth of it if smaller.
SCRATCH_RESERVE = 256 << 20
BLOCK = 512
_META_TYPES = (b"x", b"g", b"L", b"K", b"X")


def unpack_limit(folder: Path) -> int:
    """The largest decompressed archive ``folder``'s file system can take: the archive is
    written once, then its members are copied out of it (twice its size), and
    :data:`SCRATCH_RESERVE` (or a twentieth of the file system) stays free."""
    usage = shutil.disk_usage(folder)
    reserve = min(SCRATCH_RESERVE, usage.total // 20)
    return max(0, (usage.free - reserve) // 2)


def _number(field: bytes) -> int:
    """A tar number field: octal text, or base-256 (first byte 0x80 / 0xff)."""
    if field[:1] in (b"\x80", b"\xff"):
        value = int.from_bytes(field[1:], "big")
        return value - 256 ** (len(field) - 1) if field[:1] == b"\xff" else value
    text = field.split(b"\0", 1)[0].strip()
    return int(text or b"0", 8)


def _checksum_ok(block: bytes) -> bool:
    try:
        stored = _number(block[148:156])
    except ValueError:
        return False
    body = block[:148] + b" " * 8 + block[156:]
    unsigned = sum(body)
    signed = sum(b - 256 if b > 127 else b for b in body)
    return stored in (unsigned, signed)


class TarBounds:
    """Fed the decompressed bytes in order (:meth:`feed`); raises IntegrityError as soon
    as the archive passes a limit (see the module docstring)."""

    def __init__(self, what: str, limit: int) -> None:
        self.what, self.limit = what, limit
        self.members = 0
        self.written = 0
        self._header = bytearray()
        self._skip = 0  # member data (and padding) before the next header
        self._pax = bytearray()  # a pax header's records being collected
        self._collect = 0  # bytes of them still to collect
        self._pax_size: int | None = None  # ``size`` of the next member, from pax
        self._global_size: int | None = None
        self._global = False
        self._ended = False
        self._after_end = 0

    def _refuse(self, why: str) -> IntegrityError:
        return IntegrityError(f"{self.what}: {why}; nothing was imported")

    def feed(self, data: bytes, read: int) -> None:
        """Account for ``data``, the next decompressed bytes; ``read``: compressed bytes
        read so far."""
        self.written += len(data)
        if self.written > self.limit:
            raise self._refuse(
                f"larger than {self.limit} bytes once decompressed (the room in scratch)"
            )
        if self.written > RATIO_FREE and self.written > MAX_RATIO * max(read, 1):
            raise self._refuse(
                f"expands more than {MAX_RATIO} times when decompressed (a compression bomb?)"
            )
        view, at = memoryview(data), 0
        while at < len(data):
            if self._ended:
                self._after_end += len(data) - at
                if self._after_end > MAX_META:
                    raise self._refuse(
                        f"over {MAX_META} bytes after the end of the tar archive"
                    )
                return
            if self._collect:
                take = min(self._collect, len(data) - at)
                self._pax += view[at : at + take]
                self._collect -= take
                self._skip -= take
                at += take
                if not self._collect:
                    self._read_pax()
                continue
            if self._skip:
                take = min(self._skip, len(data) - at)
                self._skip -= take
                at += take
                continue
            take = min(BLOCK - len(self._header), len(data) - at)
            self._header += view[at : at + take]
            at += take
            if len(self._header) == BLOCK:
                self._block(bytes(self._header))
                self._header.clear()

    def _block(self, block: bytes) -> None:
        """A header block (or the end-of-archive block)."""
        if not any(block):
            self._ended = True  # what tarfile reads as the end; only zeros may follow
            return
        if not _checksum_ok(block):
            raise self._refuse("not a readable tar archive (a header's checksum is wrong)")
        size = _number(block[124:136])
        kind = block[156:157]
        if size < 0:
            raise self._refuse("not a readable tar archive (a negative member size)")
        padded = size + (-size % BLOCK)
        if kind in _META_TYPES:
            if size > MAX_META:
                raise self._refuse(
                    f"an extended tar header of {size} bytes, over the {MAX_META}-byte limit"
                )
            if kind in (b"x", b"g", b"X"):
                self._pax.clear()
                self._collect = size
                self._global = kind == b"g"
            self._skip = padded
            return
        self.members += 1
        if self.members > MAX_MEMBERS:
            raise self._refuse(f"more than {MAX_MEMBERS} members")
        if self._pax_size is not None:
            size = self._pax_size
        elif self._global_size is not None:
            size = self._global_size
        self._pax_size = None
        if kind in (b"1", b"2", b"3", b"4", b"5", b"6"):  # links, devices, folders: no data
            size = 0
        self._skip = size + (-size % BLOCK)

    def _read_pax(self) -> None:
        """The ``size`` record of the pax header just collected (for the next member)."""
        for record in bytes(self._pax).split(b"\n"):
            _, _, pair = record.partition(b" ")
            key, sep, value = pair.partition(b"=")
            if sep and key == b"size":
                try:
                    size = int(value)
                except ValueError:
                    raise self._refuse("not a readable tar archive (a bad pax size)") from None
                if self._global:
                    self._global_size = size
                else:
                    self._pax_size = size
