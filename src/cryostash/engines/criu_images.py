"""Read the few CRIU image files cryostash needs, without ``crit`` or protobuf.

A CRIU image file is: a 4-byte magic (``IMG_COMMON_MAGIC``, or ``IMG_SERVICE_MAGIC``
for ``stats-*``), a 4-byte image magic, then entries, each a little-endian
``uint32`` size followed by that many bytes of one protobuf message. The messages
read here (``stats_entry``, ``pstree_entry``) only use varint and nested-message
fields, so a 30-line wire decoder is enough.
"""

from __future__ import annotations

import struct
from pathlib import Path

IMG_COMMON_MAGIC = 0x54564319
IMG_SERVICE_MAGIC = 0x55105940
STATS_MAGIC = 0x57093306
PSTREE_MAGIC = 0x50273030

# images/stats.proto: dump_stats_entry and restore_stats_entry field numbers.
_DUMP_FIELDS = {
    1: "freezing_time_us",
    2: "frozen_time_us",
    3: "memdump_time_us",
    4: "memwrite_time_us",
    5: "pages_scanned",
    6: "pages_skipped_parent",
    7: "pages_written",
    8: "irmap_resolve_us",
    9: "pages_lazy",
    10: "page_pipes",
    11: "page_pipe_bufs",
    12: "shpages_scanned",
    13: "shpages_skipped_parent",
    14: "shpages_written",
}
_RESTORE_FIELDS = {
    1: "pages_compared",
    2: "pages_skipped_cow",
    3: "forking_time_us",
    4: "restore_time_us",
    5: "pages_restored",
}


def _varint(data: bytes, pos: int) -> tuple[int, int]:
    value = shift = 0
    while True:
        if pos >= len(data):
            raise ValueError("truncated varint")
        byte = data[pos]
        pos += 1
        value |= (byte & 0x7F) << shift
        if not byte & 0x80:
            return value, pos
        shift += 7


def decode_message(data: bytes) -> dict[int, int | bytes]:
    """Decode one protobuf message into ``{field number: value}`` (last value wins).

    Varints give ints, length-delimited fields give bytes; fixed 32/64-bit fields
    give their little-endian integer value.

    Raises:
        ValueError: the bytes are not a well-formed message.
    """
    fields: dict[int, int | bytes] = {}
    pos = 0
    while pos < len(data):
        key, pos = _varint(data, pos)
        number, wire = key >> 3, key & 7
        value: int | bytes
        if wire == 0:
            value, pos = _varint(data, pos)
        elif wire == 2:
            size, pos = _varint(data, pos)
            value, pos = data[pos : pos + size], pos + size
            if len(value) != size:
                raise ValueError("truncated field")
        elif wire in (1, 5):
            width = 8 if wire == 1 else 4
            value, pos = int.from_bytes(data[pos : pos + width], "little"), pos + width
        else:
            raise ValueError(f"unsupported wire type {wire}")
        fields[number] = value
    return fields


def read_entries(path: Path, magic: int) -> list[bytes]:
    """The raw protobuf entries of the CRIU image ``path`` whose image magic is ``magic``.

    Raises:
        OSError: the file cannot be read.
        ValueError: it is not such an image.
    """
    data = path.read_bytes()
    if len(data) < 8:
        raise ValueError(f"{path.name}: too short for a CRIU image")
    first, second = struct.unpack_from("<II", data)
    if first not in (IMG_COMMON_MAGIC, IMG_SERVICE_MAGIC) or second != magic:
        raise ValueError(f"{path.name}: unexpected magic {first:#x} {second:#x}")
    entries, pos = [], 8
    while pos < len(data):
        if pos + 4 > len(data):
            raise ValueError(f"{path.name}: truncated entry header")
        (size,) = struct.unpack_from("<I", data, pos)
        entry = data[pos + 4 : pos + 4 + size]
        if len(entry) != size:
            raise ValueError(f"{path.name}: truncated entry")
        entries.append(entry)
        pos += 4 + size
    return entries


def _stats(path: Path, which: int, names: dict[int, str]) -> dict[str, int]:
    try:
        entries = read_entries(path, STATS_MAGIC)
        if not entries:
            return {}
        inner = decode_message(entries[0]).get(which)
        if not isinstance(inner, bytes):
            return {}
        decoded = decode_message(inner)
    except (OSError, ValueError):
        return {}
    return {
        names.get(number, f"field_{number}"): value
        for number, value in decoded.items()
        if isinstance(value, int)
    }


def read_dump_stats(image_dir: Path) -> dict[str, int]:
    """CRIU's dump statistics from ``image_dir/stats-dump`` (times in microseconds).

    Returns an empty dict when the file is absent or unreadable: statistics are a
    nicety, never a reason to fail a dump.
    """
    return _stats(image_dir / "stats-dump", 1, _DUMP_FIELDS)


def read_restore_stats(image_dir: Path) -> dict[str, int]:
    """CRIU's restore statistics from ``image_dir/stats-restore`` (empty when absent)."""
    return _stats(image_dir / "stats-restore", 2, _RESTORE_FIELDS)


def read_root_pid(image_dir: Path) -> int | None:
    """PID of the root of the dumped tree (first ``pstree.img`` entry), or None."""
    try:
        entries = read_entries(image_dir / "pstree.img", PSTREE_MAGIC)
        pid = decode_message(entries[0]).get(1) if entries else None
    except (OSError, ValueError):
        return None
    return pid if isinstance(pid, int) and pid > 0 else None


#: What is kept of CRIU's log (``dump.log``) of a successful dump: its first and last bytes.
LOG_HEAD = 16 << 10
LOG_TAIL = 48 << 10


def trim_log(path: Path, head: int = LOG_HEAD, tail: int = LOG_TAIL) -> int:
    """Cut CRIU's log of a successful dump down to its first ``head`` and last ``tail``
    bytes (whole lines), with one line in between saying how much was left out; a log no
    longer than ``head + tail`` and a missing log are left alone. Returns the bytes left
    out. The head has CRIU's version, options and kernel; the tail, the end of the dump.
    A failed dump's log is never trimmed (its first error and tail are in the message).
    """
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        return 0
    if len(data) <= head + tail:
        return 0
    first = data[:head]
    first = first[: first.rfind(b"\n") + 1] or first
    last = data[-tail:]
    last = last[last.find(b"\n") + 1 :] if b"\n" in last[:-1] else last
    omitted = len(data) - len(first) - len(last)
    note = (f"(cryostash) ... {omitted} bytes of this log left out: cryostash keeps the "
            f"first {head >> 10} KiB and the last {tail >> 10} KiB of a successful dump's "
            "log ...\n").encode()
    tmp = path.with_name(path.name + ".trimmed")
    tmp.write_bytes(first + note + last)
    tmp.replace(path)
    return omitted
