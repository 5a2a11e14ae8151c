"""The error hierarchy of cryostash.

Every error raised on purpose by cryostash derives from :class:`CryostashError`.
Subclasses also inherit the matching built-in exception, so callers may catch
either (``except FileNotFoundError`` catches :class:`CheckpointNotFound`).
Only the CLI turns these into exit codes and messages; the ``exit_code``
class attribute is the code it uses. This module is the one place exit codes are defined
(each class's ``exit_code``, and :data:`EXIT_INTERRUPTED`; 0 is success); docs/cli.md
documents them for users.
:func:`error_class` maps a code back to its class (how ``migrate --to`` reports a
destination command's failure).
"""

from __future__ import annotations

from typing import Any, TypeVar

_E = TypeVar("_E", bound="CryostashError")

#: The exit code of a command interrupted by Ctrl-C (128 + SIGINT, as shells do).
EXIT_INTERRUPTED = 130
#: The exit code of a command whose stdout was closed by its reader (``ls | head``):
#: 128 + SIGPIPE, what a shell reports for a program killed by the closed pipe.
EXIT_BROKEN_PIPE = 141


class CryostashError(Exception):
    """Root of every cryostash error. ``str(err)`` is the user-facing message.

    ``multiline`` (class or instance attribute) is True for a message of several lines of
    cryostash's own (an engine's log tail, a migration's state and warnings): the CLI keeps
    its line breaks. Any other message is shown on one line, its newlines escaped, so that
    stored text quoted in it (a host, a label, a key id) cannot forge a line.
    """

    exit_code: int = 1
    multiline: bool = False


class InvalidName(CryostashError, ValueError):
    """A checkpoint name or target does not match Docker's name rule."""

    exit_code = 2


class UsageError(CryostashError, ValueError):
    """Bad input other than a name: malformed URL, bad PID, bad option value."""

    exit_code = 2


class CheckpointNotFound(CryostashError, FileNotFoundError):
    """The checkpoint (or the object of it that was asked for) does not exist."""

    exit_code = 3


class ObjectNotFound(CryostashError, FileNotFoundError):
    """An object a checkpoint needs (a chunk) is missing from the store."""

    exit_code = 3


class CheckpointExists(CryostashError, FileExistsError):
    """A checkpoint with that target and name already exists (or is being created).

    ``holder`` is the catalog row that holds the name (a
    :class:`cryostash.types.CheckpointInfo`) when the catalog said which, else None.
    """

    exit_code = 4

    def __init__(self, message: str, holder: Any = None) -> None:
        super().__init__(message)
        self.holder = holder


class EngineError(CryostashError, RuntimeError):
    """A checkpoint engine (CRIU, a container runtime) failed or is unavailable. Its
    message may end with the tail of the engine's log (several lines)."""

    exit_code = 5
    multiline = True


class StorageError(CryostashError, OSError):
    """The store could not be read or written.

    ``transient`` is True when retrying the same call may succeed (timeouts,
    throttling, connection resets); the transfer layer's retries read it.
    """

    exit_code = 6

    def __init__(self, message: str, *, transient: bool = False) -> None:
        super().__init__(message)
        self.transient = transient


class StoreNotFound(StorageError, FileNotFoundError):
    """A store that was named explicitly (``--store``, ``CRYOSTASH_STORE``, the config
    file, ``--checkpoint-dir``) does not exist, and the verb only reads: a typo is never
    read as an empty store."""

    exit_code = 3


class IntegrityError(CryostashError, ValueError):
    """Stored bytes do not match their recorded hash or size, or a manifest is corrupt."""

    exit_code = 7


class CatalogError(CryostashError, RuntimeError):
    """The catalog database could not be reached or used."""

    exit_code = 8


class CatalogNotFound(CatalogError, FileNotFoundError):
    """A SQLite catalog named explicitly does not exist, and the verb only reads (it is
    never created by reading)."""

    exit_code = 3


class SchemaOutdated(CatalogError):
    """The catalog database is at an older (or unknown) schema revision.

    It is never migrated silently: the message names ``cryostash db upgrade``.
    """

    exit_code = 9


class KeyRequired(CryostashError, PermissionError):
    """The store is encrypted and no passphrase was given (``CRYOSTASH_PASSWORD``,
    ``CRYOSTASH_PASSWORD_FILE``, ``CRYOSTASH_PASSWORD_COMMAND`` or a terminal prompt), or
    a passphrase is set for a store that is not encrypted (plain writes refused)."""

    exit_code = 10


class WrongKey(CryostashError, PermissionError):
    """No key of the encrypted store opens with the passphrase given (or the store's key
    objects are damaged). The message never contains the passphrase."""

    exit_code = 11


class RestoreKeyRequired(CryostashError, PermissionError):
    """The host holds a *writer* key of a write-only store (see docs/security.md): it may
    add checkpoints, but reading one (restore, inspect, verify, gc, rebuild, prefetch,
    export, migrate) needs a restore passphrase. Raised before anything is written."""

    exit_code = 12


class DaemonError(CryostashError, ConnectionError):
    """The cryostash daemon could not be reached (no socket, nothing listening), answered
    something that is not its API, or refused the client (another version)."""

    exit_code = 13


class Interrupted(CryostashError):
    """The operation was cancelled before its end (the daemon's client went away, as a
    Ctrl-C would stop the command): what it had written is undone as for an interrupted
    command. Exit code :data:`EXIT_INTERRUPTED`."""

    exit_code = EXIT_INTERRUPTED


def several_lines(error: _E) -> _E:
    """``error`` marked as a message of several lines of cryostash's own (``multiline``)."""
    error.multiline = True
    return error


def error_class(code: int) -> type[CryostashError]:
    """The error class whose ``exit_code`` is ``code`` (:class:`UsageError` for 2, not
    :class:`InvalidName`); :class:`CryostashError` for a code no subclass has."""
    return _BY_EXIT_CODE.get(code, CryostashError)


#: Exit code -> error class (2 is a usage error: a name error is one too).
_BY_EXIT_CODE: dict[int, type[CryostashError]] = {
    cls.exit_code: cls
    for cls in (
        CheckpointNotFound,
        CheckpointExists,
        EngineError,
        StorageError,
        IntegrityError,
        CatalogError,
        SchemaOutdated,
        UsageError,
        KeyRequired,
        WrongKey,
        RestoreKeyRequired,
        DaemonError,
        Interrupted,
    )
}
