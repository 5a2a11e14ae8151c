"""Mounts left inside a folder, as this process's mount namespace shows them.

:func:`mounts_under` reads ``/proc/self/mountinfo`` (mount points unescaped from its
octal ``\\040``-style escapes) and lists the mounts strictly inside a folder, deepest
first, with their file-system type. :func:`detach` unmounts one lazily (``umount2`` with
``MNT_DETACH``: also a FUSE mount whose server died, whose every access fails with
``ENOTCONN``). ``gc`` uses both for the view a lazy-restore helper killed by SIGKILL
left in its scratch folder (:mod:`cryostash.transfer.scratch`).
"""

from __future__ import annotations

import ctypes
import os
import re
from dataclasses import dataclass
from pathlib import Path

#: The type of cryostash's own FUSE view (:mod:`cryostash.transfer.fusefs`).
FUSE_TYPE = "fuse.cryostash"
_MNT_DETACH = 2
_ESCAPE = re.compile(r"\\([0-7]{3})")


@dataclass(frozen=True)
class Mount:
    """One mount: where, and its file-system type (``fuse.cryostash``, ``ext4``...)."""

    path: Path
    fstype: str


def _unescape(field: str) -> str:
    return _ESCAPE.sub(lambda m: chr(int(m.group(1), 8)), field)


def mounts_under(folder: Path, mountinfo: Path = Path("/proc/self/mountinfo")) -> list[Mount]:
    """The mounts strictly inside ``folder`` (not ``folder`` itself), deepest first; none
    if the mount table cannot be read."""
    try:
        text = mountinfo.read_text(errors="surrogateescape")
    except OSError:
        return []
    inside = str(folder).rstrip("/") + "/"
    found = []
    for line in text.splitlines():
        fields, sep, rest = line.partition(" - ")
        parts = fields.split()
        if not sep or len(parts) < 5:
            continue
        point = _unescape(parts[4])
        if point.startswith(inside):
            found.append(Mount(Path(point), (rest.split() or ["?"])[0]))
    return sorted(found, key=lambda m: len(m.path.parts), reverse=True)


def detach(path: Path) -> bool:
    """Unmount ``path`` lazily (``MNT_DETACH``); True if it was unmounted."""
    libc = ctypes.CDLL(None, use_errno=True)
    return bool(libc.umount2(os.fsencode(path), _MNT_DETACH) == 0)
