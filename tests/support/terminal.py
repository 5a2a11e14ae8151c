"""The real ``cryostash`` command run with its stderr on a pseudo-terminal, to see what it
draws there (progress bars): :func:`on_terminal`."""

from __future__ import annotations

import fcntl
import os
import pty
import struct
import subprocess
import sys
import termios

from tests.support import cli


def on_terminal(args: list[str], env: dict[str, str]) -> tuple[int, str, bytes]:
    """Run ``cryostash ARGS`` with stderr on a pseudo-terminal (24x100); return the exit
    code, stdout, and what was written to the terminal."""
    master, slave = pty.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 24, 100, 0, 0))
    try:
        proc = subprocess.Popen(
            [sys.executable, "-m", "cryostash", *args],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=slave,
            env=env,
        )
    finally:
        os.close(slave)
    seen = b""
    try:
        while True:
            try:
                data = os.read(master, 65536)  # EOF (EIO) once the child has exited
            except OSError:
                break
            if not data:
                break
            seen += data
        out, _ = proc.communicate(timeout=cli.TIMEOUT_S)
    finally:
        os.close(master)
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    return proc.returncode, out.decode(), seen
