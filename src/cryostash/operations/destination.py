"""Where a migration sends a checkpoint: this host in-process, or a host reached by a command.

A :class:`Destination` does two things to a committed checkpoint:

- ``prefetch``: fill its chunk cache from the store, so that a later restore downloads
  only the chunks it lacks; answers the ``cryostash prefetch --json`` object
  (``chunks_downloaded``, ``bytes_downloaded``, ``duration_s``, ...);
- restore it, in two steps so that the destination's start-up is not part of the
  downtime: :meth:`Destination.prepare_restore`, before the final dump, gets the
  destination ready (process started, modules loaded, catalog and store connected);
  :meth:`PendingRestore.go`, once the checkpoint is committed, restores and answers the
  ``cryostash restore --json`` object (``pid``, ``duration_s`` (the engine's own run),
  ``download_s``, ``restore_s`` (the engine, waiting for a free PID included),
  ``total_s``, ``bytes_downloaded``, ``bytes_from_cache``, ...; see
  :func:`cryostash.transfer.datapath.restore_stats`). :meth:`PendingRestore.cancel` gives up.

Lazy (``lazy_engine``, ``migrate --lazy``): :meth:`Destination.check_lazy`, before
anything is dumped, refuses what can be known not to work there; ``prepare_restore`` with
``lazy_engine`` gets ready for a lazy restore (a command destination checks there, before
it says it is ready, that the engine, CRIU, userfaultfd and a FUSE mount work:
:func:`~cryostash.operations.destination_local.require_lazy`); ``go`` then restores with
:func:`cryostash.operations.restore_lazy.restore_lazy` and returns once the process runs, with the
``restore --lazy --json`` object (``lazy``, ``time_to_running_s``, ``prepare_s``,
``restore_s``, ``eager_bytes``, ``eager_download_s``, ``helper_pid``); the pages follow
from a detached helper at the destination, which records a ``restore`` event when every
page is in (or ``restore-failed``, the process killed).

:class:`~cryostash.operations.destination_local.LocalDestination` restores with the
:class:`~cryostash.repository.Repository` of this process. :class:`CommandDestination`
runs ``COMMAND prefetch TARGET NAME --json`` for a prefetch and ``COMMAND migrate TARGET
--receive NAME`` for the restore, where COMMAND runs cryostash on the destination host
(``ssh host-b cryostash``, or for a host simulated on this machine ``env CRYOSTASH_HOST=b
CRYOSTASH_SCRATCH=... python -m cryostash``). That cryostash resolves its own settings:
it must see the same store and catalog as this host (the operator's business: its config
file, environment, or global options in COMMAND).

Trust: the arguments cryostash appends to COMMAND are quoted for a shell
(:func:`shlex.quote`) when COMMAND's program hands them to one (``ssh``, ``autossh``:
the remote shell splits them again), so a ``--checkpoint-dir`` or an engine argument is
one argument there, never shell syntax. ``--checkpoint-dir`` is passed without its
credentials (the destination takes them from its own environment or config file), and
``ssh`` gets this process's environment without cryostash's secrets
(:func:`cryostash.redact.child_env`). Every message names the command redacted.

The receiving end (``migrate --receive``,
:func:`cryostash.operations.migrate_receive.receive`) speaks JSON lines (:data:`READY`,
:data:`GO`): once ready it prints ``{"ready": true, "host": H}``; it then reads one line
from its standard input: ``go`` restores and prints the restore object; anything else (or
end of input) exits without restoring. A failure is reported as every verb reports one
(``Error: ...`` on standard error, the exit code of its class); this side raises the
error class of that exit code (:func:`cryostash.errors.error_class`), with the command,
its exit code and its standard error in the message.
"""

from __future__ import annotations

import contextlib
import json
import os
import shlex
import shutil
import subprocess
import tempfile
from collections.abc import Mapping, Sequence
from typing import IO, Any, Protocol

from cryostash.engines.criu import CriuEngine
from cryostash.engines.criu_lazy import lazy_support
from cryostash.errors import CryostashError, UsageError, error_class, several_lines
from cryostash.redact import child_env, redact_text
from cryostash.urls import strip_credentials

#: The key of the receiver's first line, ``{"ready": true, "host": H}``.
READY = "ready"
#: The line that tells a ready receiver to restore (anything else: exit without).
GO = "go"
#: Lines of a failed command's standard error shown in the message.
STDERR_LINES = 20
#: How long a cancelled receiver may take to exit before it is killed.
CANCEL_TIMEOUT_S = 10.0
#: Programs that pass their arguments to a (remote) shell: appended arguments are quoted.
REMOTE_SHELLS = frozenset({"ssh", "autossh"})


class PendingRestore(Protocol):
    """A destination ready to restore one checkpoint (see the module docstring)."""

    def go(self) -> dict[str, Any]:
        """Restore now; the ``restore --json`` object."""
        ...

    def cancel(self) -> None:
        """Give up without restoring (safe to call after :meth:`go` or twice)."""
        ...


class Destination(Protocol):
    """Where a migration prefetches and restores (see the module docstring)."""

    def describe(self) -> str:
        """Where this is, for messages and reports (``this host``, the command)."""
        ...

    def prefetch(self, target: str, name: str, checkpoint_dir: str | None) -> dict[str, Any]:
        """Fill the destination's chunk cache with ``target``/``name``'s chunks."""
        ...

    def check_lazy(self, engine: str) -> None:
        """Refuse, before anything is dumped, a lazy restore by ``engine`` that cannot
        work there, as far as it can be known from here.

        Raises:
            UsageError: not an engine that restores lazily. EngineError: no CRIU >= 4.2,
                userfaultfd or FUSE (for a destination this process can probe).
        """
        ...

    def prepare_restore(
        self,
        target: str,
        name: str,
        checkpoint_dir: str | None,
        args: Sequence[str],
        *,
        lazy_engine: str | None = None,
        allow: Sequence[str] = (),
    ) -> PendingRestore:
        """Get ready to restore ``target``/``name`` (which need not exist yet); ``args``
        are ``restore`` flags (``--tcp-established``, ``--file-locks``, ``--ignore-rootfs``);
        with ``lazy_engine`` (the engine that dumps it), restore lazily with it; ``allow``:
        the ``restore --allow`` words (what a re-created container may get)."""
        ...


class CommandDestination:
    """A host reached by running ``command`` (cryostash there, e.g. ``ssh host-b cryostash``).

    Args:
        command: the argument vector that runs cryostash at the destination; the verb
            and its arguments are appended (quoted for a shell when ``command[0]`` is one
            of :data:`REMOTE_SHELLS`).
        env: the environment of the command (default: this process's; for a remote
            shell, without cryostash's secrets).
    """

    def __init__(self, command: Sequence[str], env: Mapping[str, str] | None = None) -> None:
        if not command:
            raise UsageError("--to: empty command (expected e.g. 'ssh host-b cryostash')")
        self.command = list(command)
        self.remote_shell = os.path.basename(self.command[0]) in REMOTE_SHELLS
        if self.remote_shell:
            self.env: dict[str, str] | None = child_env(env)
        else:
            self.env = dict(env) if env is not None else None

    def _argv(self, *args: str) -> list[str]:
        """COMMAND plus ``args`` (each quoted for the remote shell if COMMAND has one)."""
        if self.remote_shell:
            return [*self.command, *(shlex.quote(a) for a in args)]
        return [*self.command, *args]

    @classmethod
    def parse(cls, text: str) -> CommandDestination:
        """The destination ``--to TEXT`` names: TEXT split like a shell (:func:`shlex.split`).

        Raises:
            UsageError: TEXT is empty, its quotes do not balance, or its program is not
                found on ``PATH`` (checked here, before anything is dumped).
        """
        try:
            argv = shlex.split(text)
        except ValueError as exc:
            raise UsageError(f"--to {text!r}: {exc}") from exc
        if not argv:
            raise UsageError("--to: empty command (expected e.g. 'ssh host-b cryostash')")
        if shutil.which(argv[0]) is None:
            raise UsageError(f"--to {text!r}: program {argv[0]!r} not found")
        return cls(argv)

    def describe(self) -> str:
        """The command, quoted as a shell would need it (redacted)."""
        return _shown(self.command)

    def check_lazy(self, engine: str) -> None:
        """Only whether ``engine`` restores lazily at all (the criu engine); what the
        destination host has (CRIU, userfaultfd, FUSE) its receiver checks before it says
        it is ready (:meth:`prepare_restore`).

        Raises:
            UsageError: ``lazy restore is not supported by ENGINE``.
        """
        from cryostash.engines import get_engine

        found = get_engine(engine)
        if not isinstance(found, CriuEngine):
            raise UsageError(lazy_support(found) or f"lazy restore is not supported by {engine}")

    def prefetch(self, target: str, name: str, checkpoint_dir: str | None) -> dict[str, Any]:
        """``COMMAND prefetch TARGET NAME --json [--checkpoint-dir URL]``."""
        argv = self._argv("prefetch", target, name, "--json", *_dir_flag(checkpoint_dir))
        with tempfile.TemporaryFile() as err:
            try:
                done = subprocess.run(
                    argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=err,
                    env=self.env, check=False,
                )
            except OSError as exc:
                raise _cannot_run(argv, exc) from exc
            if done.returncode != 0:
                raise _failed(argv, done.returncode, err)
        return _json_object(argv, done.stdout.decode(errors="replace"))

    def prepare_restore(
        self,
        target: str,
        name: str,
        checkpoint_dir: str | None,
        args: Sequence[str],
        *,
        lazy_engine: str | None = None,
        allow: Sequence[str] = (),
    ) -> PendingRestore:
        """Start ``COMMAND migrate TARGET --receive NAME [--checkpoint-dir URL] [--lazy
        --engine ENGINE] [--allow WHAT...] [ARGS]`` and wait until it says it is ready
        (with ``--lazy``, it checks first that it can restore lazily:
        :func:`~cryostash.operations.destination_local.require_lazy`).

        Raises:
            CryostashError (the class of its exit code): it exited instead.
        """
        lazy = ["--lazy", "--engine", lazy_engine] if lazy_engine is not None else []
        allowed = [flag for word in allow for flag in ("--allow", word)]
        argv = self._argv(
            "migrate", target, "--receive", name, *_dir_flag(checkpoint_dir), *lazy,
            *allowed, *args,
        )
        return _CommandRestore(argv, self.env)


class _CommandRestore:
    """A started receiver (``migrate --receive``), ready to restore."""

    def __init__(self, argv: list[str], env: Mapping[str, str] | None) -> None:
        self.argv = argv
        self._err = tempfile.TemporaryFile()  # noqa: SIM115 (closed when it has exited)
        try:
            self._proc = subprocess.Popen(
                argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=self._err,
                env=None if env is None else dict(env),
            )
        except OSError as exc:
            self._err.close()
            raise _cannot_run(argv, exc) from exc
        assert self._proc.stdin is not None and self._proc.stdout is not None
        self._stdin: IO[bytes] = self._proc.stdin
        self._stdout: IO[bytes] = self._proc.stdout
        line = self._stdout.readline()
        try:
            ready = json.loads(line) if line.strip() else None
        except ValueError:
            ready = None
        if not (isinstance(ready, dict) and ready.get(READY) is True):
            self._finish(kill=not line)
            raise self._error(f"did not say it was ready: {line.decode(errors='replace')!r}")

    def go(self) -> dict[str, Any]:
        """Say ``go``; its answer: the line it prints once restored (its exit, which
        :meth:`cancel` waits for, is not waited for here)."""
        try:
            self._stdin.write(f"{GO}\n".encode())
            self._stdin.close()
        except OSError:
            pass  # it exited: its exit code and stderr tell why
        line = self._stdout.readline()
        if not line.strip():
            self._finish(kill=False)
            raise self._error("exited without restoring")
        return _json_object(self.argv, line.decode(errors="replace"))

    def cancel(self) -> None:
        """End of input for it, then wait until it has exited."""
        if self._proc.returncode is None:
            self._finish(kill=False)
            self._err.close()

    def _finish(self, *, kill: bool) -> None:
        """Close its input (a receiver then exits) and wait for it (killed if need be)."""
        with contextlib.suppress(OSError):
            self._stdin.close()
        if kill and self._proc.poll() is None:
            self._proc.kill()
        try:
            self._proc.wait(timeout=CANCEL_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            self._proc.kill()
            self._proc.wait()
        self._stdout.close()

    def _error(self, what: str) -> CryostashError:
        """The error of a receiver that exited (its stderr read, then closed)."""
        code = self._proc.returncode
        try:
            if code not in (0, None):
                return _failed(self.argv, code, self._err)
            return CryostashError(f"destination command `{_shown(self.argv)}` {what}")
        finally:
            self._err.close()


def _dir_flag(checkpoint_dir: str | None) -> list[str]:
    return ["--checkpoint-dir", strip_credentials(checkpoint_dir)] if checkpoint_dir else []


def dir_option(checkpoint_dir: str | None) -> str:
    """`` --checkpoint-dir URL`` (credential-free, quoted for a shell) for a message
    telling the user what to run, or '' for the default store."""
    if not checkpoint_dir:
        return ""
    return f" --checkpoint-dir {shlex.quote(strip_credentials(checkpoint_dir))}"


def _shown(argv: list[str]) -> str:
    """A command line as messages show it (redacted)."""
    return redact_text(shlex.join(argv))


def _cannot_run(argv: list[str], exc: OSError) -> CryostashError:
    return CryostashError(f"destination command `{_shown(argv)}` cannot run: {exc}")


def _failed(argv: list[str], code: int, err: IO[bytes]) -> CryostashError:
    """The error a destination command's exit ``code`` stands for, with its stderr."""
    err.seek(0)
    text = err.read().decode(errors="replace")
    lines = [line for line in text.splitlines() if line.strip()]
    tail = "\n".join(lines[-STDERR_LINES:]) or "(no output on stderr)"
    cls = error_class(code)
    return several_lines(
        cls(f"destination command `{_shown(argv)}` failed (exit {code}):\n{redact_text(tail)}")
    )


def _json_object(argv: list[str], text: str) -> dict[str, Any]:
    try:
        value = json.loads(text)
    except ValueError:
        value = None
    if not isinstance(value, dict):
        raise CryostashError(
            f"destination command `{_shown(argv)}` did not print a JSON object: "
            f"{text.strip()[:200]!r}"
        )
    return value
