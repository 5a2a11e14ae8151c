"""A file cryostash writes outside its own folders (``export -o FILE``): created safely.

- The target must be missing or a regular file: a symbolic link, folder, device, FIFO or
  socket is refused with UsageError (exit 2) before anything is written, and checked
  again just before the rename (a rename replaces a directory entry, never writes
  through it).
- The bytes go to a new temporary file in the target's folder, ``.NAME.<random>.partial``,
  opened with ``O_CREAT | O_EXCL | O_NOFOLLOW`` and mode 0600 whatever the umask (it may
  hold process memory): a file or link planted under any name is never opened.
- Once whole it is flushed, fsynced and renamed over the target (then the folder is
  fsynced); on any failure it is removed and the target is left as it was.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import stat
from collections.abc import Iterator
from pathlib import Path
from typing import IO

from cryostash.errors import StorageError, UsageError
from cryostash.redact import escape

#: Mode of a written file (owner only: an export holds process memory).
MODE = 0o600
_KINDS = (
    (stat.S_ISLNK, "a symbolic link"),
    (stat.S_ISDIR, "a folder"),
    (stat.S_ISCHR, "a character device"),
    (stat.S_ISBLK, "a block device"),
    (stat.S_ISFIFO, "a FIFO"),
    (stat.S_ISSOCK, "a socket"),
)


def check_target(target: Path, flag: str = "-o") -> None:
    """UsageError unless ``target`` is missing or a regular file (not followed if a link).

    Raises:
        UsageError: ``-o X: X is a FIFO ...``.
        StorageError: it cannot be looked at (e.g. a folder on the way is unreadable).
    """
    try:
        mode = os.lstat(target).st_mode
    except FileNotFoundError:
        return
    except OSError as exc:
        raise StorageError(f"cannot write {escape(str(target))}: {exc}") from exc
    for test, kind in _KINDS:
        if test(mode):
            raise UsageError(
                f"{flag} {escape(str(target))}: it is {kind}; cryostash writes only a new or "
                "a regular file there (use - for stdout)"
            )
    if not stat.S_ISREG(mode):
        raise UsageError(f"{flag} {escape(str(target))}: not a regular file")


@contextlib.contextmanager
def output_file(target: Path, flag: str = "-o") -> Iterator[IO[bytes]]:
    """A binary stream whose bytes become ``target`` when the block ends without error
    (see the module docstring); nothing changes at ``target`` otherwise.

    Raises:
        UsageError: ``target`` is not missing nor a regular file (:func:`check_target`).
        StorageError: the file cannot be created, written or renamed.
    """
    check_target(target, flag)
    partial = target.with_name(f".{target.name}.{secrets.token_hex(8)}.partial")
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
    try:
        out = os.fdopen(os.open(partial, flags, MODE), "wb")
    except OSError as exc:
        raise StorageError(f"cannot write {escape(str(target))}: {exc}") from exc
    try:
        with out:
            os.fchmod(out.fileno(), MODE)  # whatever the umask
            yield out
            out.flush()
            os.fsync(out.fileno())
        check_target(target, flag)
        os.rename(partial, target)
    except OSError as exc:
        partial.unlink(missing_ok=True)
        raise StorageError(f"cannot write {escape(str(target))}: {exc}") from exc
    except BaseException:
        partial.unlink(missing_ok=True)
        raise
    _sync_folder(target.parent)


def _sync_folder(folder: Path) -> None:
    with contextlib.suppress(OSError):
        fd = os.open(folder, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
