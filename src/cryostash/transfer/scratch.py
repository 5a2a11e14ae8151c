"""Private scratch folders that know whether their owner is alive.

Every dump and restore works in its own folder ``SCRATCH/<purpose>-<random>`` (mode
0700), created by :func:`private_scratch` and removed when the block ends. While the
block runs, the folder is held with an exclusive ``flock`` on its directory file
descriptor (close-on-exec, so engines do not inherit it). The kernel drops the lock
when the owner dies, however it dies (SIGKILL included), so :func:`stale_scratch`
can tell a folder left by a crashed process (lock free) from one in use (lock held)
without guessing from its age.

A create whose dump stopped the process (no ``--leave-running``) marks its folder
(:func:`mark_stopped`: a ``NAME.stopped`` file beside it) until the block ends: if that
create dies before the checkpoint is stored, the folder holds the only copy of the
process, and :func:`keep_if_stopped` moves it to ``kept-...`` (never removed by anyone)
instead of letting it be deleted.

Folder names never overflow the file-name limit (255 bytes): a purpose longer than
:data:`MAX_PURPOSE` (a long target plus a long name) keeps its start and gets a hash of
the whole in place of the rest (:func:`short_name`), so two long names stay apart.

Only folders whose names look like ours (``create-...`` / ``restore-...`` / ``lazy-...``
plus ``mkdtemp``'s suffix) are ever considered, so pointing ``--scratch`` at a shared
folder such as ``/tmp`` never puts anyone else's files at risk.

A stale folder may hold a mount: the FUSE view of a lazy-restore helper killed by SIGKILL
(``lazy-...``). :func:`remove_if_stale` detaches every ``fuse.cryostash`` mount inside
the folder first (under the folder's lock) and says which; a folder holding any other
mount is never removed (its contents are someone else's).
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import os
import re
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

from cryostash.errors import UsageError
from cryostash.transfer.mounts import FUSE_TYPE, detach, mounts_under

#: Names of scratch folders made by :func:`private_scratch` (purpose, dash, mkdtemp suffix).
SCRATCH_NAME = re.compile(r"^(create|restore|lazy)-.+-[a-z0-9_]{8}$")
#: The longest purpose used as it is (bytes); room is left for ``kept-``, mkdtemp's suffix
#: and ``.stopped``.
MAX_PURPOSE = 160


def short_name(text: str, limit: int = MAX_PURPOSE) -> str:
    """``text`` if it fits in ``limit`` bytes, else its first part, a dash and a 16-digit
    BLAKE2b hash of the whole (at most ``limit`` bytes in all; the same text gives the
    same name)."""
    if len(text.encode()) <= limit:
        return text
    digest = hashlib.blake2b(text.encode(), digest_size=8).hexdigest()
    head = text.encode()[: limit - len(digest) - 1].decode(errors="ignore")
    return f"{head}-{digest}"


@contextlib.contextmanager
def private_scratch(root: Path, purpose: str) -> Iterator[Path]:
    """A new private (0700) folder under ``root``, locked while the block runs and
    removed when it ends, whatever happens.

    Args:
        root: the scratch root (created 0700 if missing).
        purpose: the name prefix, ``create-...`` or ``restore-...`` (shortened by
            :func:`short_name` when long).

    Raises:
        UsageError: ``root`` is not a folder, or no folder can be made in it.
    """
    try:
        root.mkdir(parents=True, exist_ok=True, mode=0o700)
        path = Path(tempfile.mkdtemp(prefix=f"{short_name(purpose)}-", dir=root))
    except OSError as exc:
        why = "it is not a folder" if root.exists() and not root.is_dir() else exc.strerror
        raise UsageError(f"cannot use scratch folder {root}: {why or exc}") from None
    fd = -1
    try:
        fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)
        _marker(path).unlink(missing_ok=True)
        if fd >= 0:
            os.close(fd)


def _marker(path: Path) -> Path:
    return path.with_name(f"{path.name}.stopped")


def mark_stopped(path: Path, note: str) -> None:
    """Record that the scratch folder ``path`` holds the image of a process its dump
    stopped (``note`` says which); removed with the folder when its block ends."""
    fd = os.open(_marker(path), os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o600)
    with os.fdopen(fd, "w") as fh:
        fh.write(note + "\n")


def keep_if_stopped(path: Path) -> Path | None:
    """If the stale folder ``path`` holds a stopped process's image (:func:`mark_stopped`)
    and nobody holds its lock, move it to ``kept-<name>`` beside it, with the note as
    ``kept-<name>/NOTE``; return the new path. None (nothing done) otherwise."""
    marker = _marker(path)
    if not marker.exists():
        return None
    fd = _lock_if_free(path)
    if fd is None:
        return None
    try:
        kept = path.with_name(f"kept-{path.name}")
        path.rename(kept)
        marker.rename(kept / "NOTE")
    finally:
        os.close(fd)
    return kept


def _lock_if_free(path: Path) -> int | None:
    """An fd of ``path`` holding its lock if nobody else held it (its owner exited)."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    except OSError:
        return None
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        os.close(fd)
        return None
    return fd


def stale_scratch(root: Path, *, older_than: float) -> list[Path]:
    """Scratch folders under ``root`` left by processes that died, sorted.

    A folder is stale when its name matches :data:`SCRATCH_NAME`, nobody holds its
    lock, and it was last modified at or before the POSIX time ``older_than``.
    """
    try:
        entries = sorted(root.iterdir())
    except OSError:
        return []
    stale: list[Path] = []
    for entry in entries:
        if not SCRATCH_NAME.match(entry.name) or entry.is_symlink() or not entry.is_dir():
            continue
        try:
            modified = entry.stat().st_mtime
        except OSError:
            continue
        fd = _lock_if_free(entry) if modified <= older_than else None
        if fd is not None:
            os.close(fd)  # closing drops our lock at once
            stale.append(entry)
    return stale


def remove_if_stale(path: Path, unmounted: list[str] | None = None) -> bool:
    """Remove the scratch folder ``path`` if nobody holds its lock; True if removed.

    The lock is held while the folder is removed, so an owner that was just about to
    lock a brand-new folder waits, then fails cleanly on the missing folder. cryostash's
    FUSE mounts inside it are detached first (their paths appended to ``unmounted``); a
    folder that still holds a mount afterwards (another file system, or a detach that
    failed) is left alone (False).
    """
    fd = _lock_if_free(path)
    if fd is None:
        return False
    try:
        for mount in mounts_under(path):
            if mount.fstype == FUSE_TYPE and detach(mount.path) and unmounted is not None:
                unmounted.append(str(mount.path))
        if mounts_under(path):
            return False
        shutil.rmtree(path, ignore_errors=True)
    finally:
        os.close(fd)
    return True


def leftover_mounts(path: Path) -> list[str]:
    """cryostash's FUSE mounts inside the scratch folder ``path`` (what
    :func:`remove_if_stale` would detach)."""
    return [str(m.path) for m in mounts_under(path) if m.fstype == FUSE_TYPE]
