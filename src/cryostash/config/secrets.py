"""Where a store's passphrase comes from (never from argv, never into a log or a message).

Sources, first found wins:

1. ``CRYOSTASH_PASSWORD``: the passphrase itself;
2. ``CRYOSTASH_PASSWORD_FILE``: a file whose content is the passphrase (one trailing
   newline dropped) — also how a key file is given;
3. ``CRYOSTASH_PASSWORD_COMMAND``: a command (split like a shell would, run without a
   shell) whose standard output is the passphrase (one trailing newline dropped);
4. a prompt on the controlling terminal, when the caller allows it and stdin is a
   terminal.

A new passphrase (``store init --encrypt`` takes the regular sources; ``key add`` takes
``CRYOSTASH_NEW_PASSWORD`` / ``CRYOSTASH_NEW_PASSWORD_FILE`` or ``--new-password-file``,
else a prompt asked twice) is read the same way.

Contract: the passphrase is returned as bytes and never appears in an error message
(messages name the variable or file, not the content); a command's standard error is
shown only as its exit status. An empty passphrase is refused; a new one (``store init
--encrypt``, ``key add``) shorter than :data:`MIN_NEW_PASSPHRASE` bytes too
(:func:`long_enough`).
"""

from __future__ import annotations

import getpass
import os
import shlex
import subprocess
import sys
from collections.abc import Callable, Mapping
from pathlib import Path

from cryostash.errors import UsageError

PASSWORD = "CRYOSTASH_PASSWORD"
PASSWORD_FILE = "CRYOSTASH_PASSWORD_FILE"
PASSWORD_COMMAND = "CRYOSTASH_PASSWORD_COMMAND"
NEW_PASSWORD = "CRYOSTASH_NEW_PASSWORD"
NEW_PASSWORD_FILE = "CRYOSTASH_NEW_PASSWORD_FILE"

#: The shortest new passphrase accepted, in bytes (characters of ASCII text).
MIN_NEW_PASSPHRASE = 8

#: Called when a passphrase is needed; None when there is none.
PassphraseSource = Callable[[], bytes | None]


def _strip(data: bytes) -> bytes:
    return data[:-1] if data.endswith(b"\n") else data


def _nonempty(value: bytes, where: str) -> bytes:
    if not value:
        raise UsageError(f"the passphrase from {where} is empty")
    return value


def long_enough(value: bytes) -> bytes:
    """``value``, a new passphrase, if it has at least :data:`MIN_NEW_PASSPHRASE` bytes.

    Raises:
        UsageError: ``the new passphrase is too short ...`` (its length and content are
            not shown).
    """
    if len(value) < MIN_NEW_PASSPHRASE:
        raise UsageError(
            f"the new passphrase is too short: use at least {MIN_NEW_PASSPHRASE} characters "
            "(a long phrase of several words, or a key file)"
        )
    return value


def read_file(path: str, where: str) -> bytes:
    """The passphrase in file ``path`` (``where`` names its source in messages).

    Raises:
        UsageError: ``cannot read the passphrase file named by WHERE: REASON``, or empty.
    """
    try:
        data = Path(path).expanduser().read_bytes()
    except OSError as exc:
        raise UsageError(
            f"cannot read the passphrase file named by {where}: {exc.strerror or exc}"
        ) from exc
    return _nonempty(_strip(data), where)


def run_command(command: str) -> bytes:
    """The standard output of ``command`` (``CRYOSTASH_PASSWORD_COMMAND``).

    Raises:
        UsageError: the command is malformed, cannot run or exits non-zero (its output
            is not shown), or prints nothing.
    """
    where = PASSWORD_COMMAND
    try:
        argv = shlex.split(command)
    except ValueError as exc:
        raise UsageError(f"{where} is not a valid command line: {exc}") from exc
    if not argv:
        raise UsageError(f"{where} is empty")
    try:
        done = subprocess.run(
            argv, stdin=subprocess.DEVNULL, capture_output=True, check=False, timeout=120
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise UsageError(f"{where} could not run: {type(exc).__name__}") from exc
    if done.returncode != 0:
        raise UsageError(f"{where} exited with status {done.returncode}")
    return _nonempty(_strip(done.stdout), where)


def prompt(label: str, *, confirm: bool = False) -> bytes:
    """Ask on the terminal (no echo); twice when ``confirm``.

    Raises:
        UsageError: the answers differ, or the answer is empty.
    """
    first = getpass.getpass(f"{label}: ").encode()
    if confirm and getpass.getpass(f"{label} again: ").encode() != first:
        raise UsageError("the passphrases typed do not match")
    return _nonempty(first, "the prompt")


def _interactive() -> bool:
    try:
        return sys.stdin.isatty()
    except (AttributeError, ValueError):
        return False


def passphrase(
    environ: Mapping[str, str] | None = None, *, ask: bool = False, confirm: bool = False
) -> bytes | None:
    """The passphrase from the environment (see the module docstring), else from a prompt
    when ``ask`` and stdin is a terminal, else None.

    Raises:
        UsageError: a source is set but unusable (unreadable file, failing command, empty).
    """
    env = os.environ if environ is None else environ
    if env.get(PASSWORD):
        return env[PASSWORD].encode()
    if env.get(PASSWORD_FILE):
        return read_file(env[PASSWORD_FILE], PASSWORD_FILE)
    if env.get(PASSWORD_COMMAND):
        return run_command(env[PASSWORD_COMMAND])
    if ask and _interactive():
        return prompt("Passphrase of the store", confirm=confirm)
    return None


def is_set(environ: Mapping[str, str] | None = None) -> bool:
    """True if a passphrase source is set in the environment (not asked for)."""
    env = os.environ if environ is None else environ
    return any(env.get(name) for name in (PASSWORD, PASSWORD_FILE, PASSWORD_COMMAND))


def new_passphrase(
    file: str | None = None, environ: Mapping[str, str] | None = None
) -> bytes:
    """A new passphrase for ``key add``: ``file`` (``--new-password-file``), else
    ``CRYOSTASH_NEW_PASSWORD``, ``CRYOSTASH_NEW_PASSWORD_FILE``, else asked twice.

    Raises:
        UsageError: none given and no terminal, a source is unusable, or the passphrase
            is shorter than :data:`MIN_NEW_PASSPHRASE`.
    """
    return long_enough(_new_passphrase(file, environ))


def _new_passphrase(file: str | None, environ: Mapping[str, str] | None) -> bytes:
    env = os.environ if environ is None else environ
    if file:
        return read_file(file, "--new-password-file")
    if env.get(NEW_PASSWORD):
        return env[NEW_PASSWORD].encode()
    if env.get(NEW_PASSWORD_FILE):
        return read_file(env[NEW_PASSWORD_FILE], NEW_PASSWORD_FILE)
    if _interactive():
        return prompt("New passphrase", confirm=True)
    raise UsageError(
        f"no new passphrase: use --new-password-file FILE, {NEW_PASSWORD} or "
        f"{NEW_PASSWORD_FILE}, or run on a terminal"
    )
