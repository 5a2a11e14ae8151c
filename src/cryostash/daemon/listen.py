"""The daemon's UNIX socket: made private before anyone can connect.

The socket's folder must be the daemon's own: created if missing, else owned by the
daemon's user and writable by no one else (so nobody can swap the socket); it is then set
to 0700 (0750 and the group with ``--group``). The socket is bound under a umask that
leaves it 0600, then set to 0600 (0660 and the group with ``--group``). A socket file
left by a daemon that died is replaced; one a live daemon answers on is refused.
"""

from __future__ import annotations

import contextlib
import grp
import os
import socket
import stat
from pathlib import Path

from cryostash.errors import UsageError


def bind_unix(path: Path, group: str | None) -> socket.socket:
    """A listening, non-blocking UNIX socket at ``path`` (see the module docstring).

    Raises:
        UsageError: unknown group; a folder that is not the daemon's own; a daemon
            already answering at ``path``; ``path`` is not a socket; ``path`` too long.
    """
    gid = _gid(group)
    folder = path.parent
    folder.mkdir(parents=True, mode=0o700, exist_ok=True)
    info = folder.lstat()
    if not stat.S_ISDIR(info.st_mode):
        raise UsageError(f"the socket's folder {folder} is not a folder")
    if info.st_uid != os.geteuid():
        raise UsageError(
            f"the socket's folder {folder} belongs to another user (uid {info.st_uid})"
        )
    if info.st_mode & 0o022:
        raise UsageError(
            f"the socket's folder {folder} is writable by others: give the socket a folder "
            "of its own (the default is /run/cryostash)"
        )
    os.chmod(folder, 0o750 if gid is not None else 0o700)
    if gid is not None:
        os.chown(folder, -1, gid)
    _clear(path)
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    old = os.umask(0o177)
    try:
        sock.bind(str(path))
    except OSError as exc:
        sock.close()
        raise UsageError(f"cannot listen on {path}: {exc.strerror or exc}") from exc
    finally:
        os.umask(old)
    os.chmod(path, 0o660 if gid is not None else 0o600)
    if gid is not None:
        os.chown(path, -1, gid)
    sock.listen(128)
    sock.setblocking(False)
    return sock


def _gid(group: str | None) -> int | None:
    if group is None:
        return None
    try:
        return grp.getgrnam(group).gr_gid
    except KeyError:
        raise UsageError(f"--group {group}: no such group") from None


def _clear(path: Path) -> None:
    """Remove a stale socket at ``path``; refuse a live one or any other file."""
    try:
        info = path.lstat()
    except FileNotFoundError:
        return
    if not stat.S_ISSOCK(info.st_mode):
        raise UsageError(f"{path} exists and is not a socket")
    probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        probe.settimeout(2)
        probe.connect(str(path))
    except OSError:
        path.unlink(missing_ok=True)  # nobody listens: left by a daemon that died
        return
    finally:
        probe.close()
    raise UsageError(f"a daemon already listens on {path}")


def remove(path: Path) -> None:
    """Remove the socket file (at shutdown)."""
    with contextlib.suppress(FileNotFoundError):
        path.unlink()
