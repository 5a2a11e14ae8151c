"""Crash-safe writes on the local file system (the ``file://`` backend).

The pattern (dvc-objects ``as_atomic``, restic's local backend): write a hidden
temporary sibling, fsync it, move it into place with one atomic system call, fsync
the folder. The temporary file is removed on any exception, Ctrl-C included. A
crash can leave a temporary file behind, never a partial file under the final name.

Everything written here holds process memory or its metadata, so it is owner-only
whatever the umask: files are created 0600 (:data:`FILE_MODE`), folders 0700
(:data:`DIR_MODE`).
"""

from __future__ import annotations

import errno
import os
import secrets
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from typing import BinaryIO

#: Mode of every file cryostash creates on local disk (owner-only: process memory).
FILE_MODE = 0o600
#: Mode of every folder cryostash creates on local disk.
DIR_MODE = 0o700
#: errno values meaning "this file system cannot make hard links".
_NO_LINK = frozenset({errno.EPERM, errno.ENOTSUP, errno.EOPNOTSUPP, errno.EMLINK, errno.ENOSYS})


def temp_name(final: str) -> str:
    """A hidden, unique sibling name for ``final`` (``.NAME.<random>.tmp``)."""
    head, tail = os.path.split(final)
    return os.path.join(head, f".{tail}.{secrets.token_hex(6)}.tmp")


def read_file(path: str) -> bytes:
    """The whole content of the file ``path`` (raises what ``open`` and ``read`` raise)."""
    with open(path, "rb", buffering=0) as fh:
        return fh.read()


def fsync_dir(path: str) -> None:
    """fsync a folder so that a new entry in it survives a crash (best effort)."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def makedirs(path: str) -> None:
    """``mkdir -p path``, fsyncing the parent of every folder it creates; each folder it
    creates is owner-only (:data:`DIR_MODE`).

    Raises:
        NotADirectoryError: a component of ``path`` exists and is not a folder (never
            FileExistsError, which callers read as "the object exists").
    """
    missing: list[str] = []
    current = os.path.abspath(path)
    while not os.path.isdir(current):
        missing.append(current)
        parent = os.path.dirname(current)
        if parent == current:
            break
        current = parent
    for folder in reversed(missing):
        try:
            os.mkdir(folder, DIR_MODE)
        except FileExistsError:
            if not os.path.isdir(folder):
                raise NotADirectoryError(
                    errno.ENOTDIR, f"{folder} exists and is not a directory", folder
                ) from None
        fsync_dir(os.path.dirname(folder))


@contextmanager
def _temp_sibling(final: str) -> Iterator[tuple[str, BinaryIO]]:
    """Create a temporary sibling of ``final``; always removed when the block ends
    (after a successful link) or fails."""
    tmp = temp_name(final)
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, FILE_MODE)
    try:
        with os.fdopen(fd, "wb") as fh:
            yield tmp, fh
    finally:
        with suppress(FileNotFoundError):
            os.unlink(tmp)


def write_create_only(final: str, data: bytes) -> None:
    """Write ``data`` to ``final`` atomically, failing if ``final`` exists.

    Atomic: readers see no file or the whole file. Create-only: ``os.link`` fails
    with FileExistsError when ``final`` exists, whoever wrote it (the race between
    two writers is decided by the kernel). On a file system without hard links,
    falls back to ``O_CREAT|O_EXCL`` (still create-only; a crash mid-write may
    then leave a truncated file, which readers reject as corrupt).

    Raises:
        FileExistsError: ``final`` exists; it is left untouched.
        OSError: any other failure; nothing is left under ``final``.
    """
    makedirs(os.path.dirname(final))
    with _temp_sibling(final) as (tmp, fh):
        fh.write(data)
        fh.flush()
        os.fsync(fh.fileno())
        try:
            os.link(tmp, final)
        except OSError as exc:
            if isinstance(exc, FileExistsError) or exc.errno not in _NO_LINK:
                raise
            _write_exclusive(final, data)
    fsync_dir(os.path.dirname(final))


def _write_exclusive(final: str, data: bytes) -> None:
    fd = os.open(final, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, FILE_MODE)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
    except BaseException:
        os.unlink(final)
        raise
