"""The ``criu`` engine: checkpoint and restore a process tree by PID with CRIU >= 4.2.

Dump: ``criu dump -t PID -D DIR -o dump.log -v4 [--leave-running] [extra args]``. The log
of a successful dump is then cut to its first 16 KiB and last 48 KiB
(:func:`~cryostash.engines.criu_images.trim_log`); a failed dump's log is not cut (its
first error and tail go into the error).

- No ``--shell-job``: the process must lead its own session (started with
  ``setsid``, stdio redirected). For a process that belongs to a terminal session
  CRIU says "not a session leader. Consider using --shell-job option"; pass
  ``--shell-job`` as an extra argument then.
- No ``--tcp-established``, ``--ext-unix-sk``, ``--file-locks`` by default: each
  changes what is captured (and the first one locks the network); ask for them with
  extra arguments. Listening TCP sockets and UDP sockets need no option.
- The extra arguments given to the dump are recorded in ``cryostash-criu.json`` in
  the image directory, and the ones CRIU also needs at restore (``--shell-job``,
  ``--tcp-established``, ``--ext-unix-sk``, ``--file-locks``) are passed again there.
- Without ``--leave-running`` CRIU kills the tree at the end of the dump. If the
  dumped process is a child of the caller it then stays a zombie, holding its PID
  (and so blocking a restore) until the caller ``wait()``s for it: that is the
  caller's business. :meth:`CriuEngine.dump` returns once the process is dead
  (gone, or a zombie).

Restore: ``criu restore -D DIR -d --pidfile restore.pid -o restore.log -v4``.
``-d`` (``--restore-detached``): CRIU exits once the tree runs again, so the
restored root is reparented to init (or to the nearest child subreaper among the
caller's ancestors; if the caller itself is a subreaper it becomes the caller's
child). CRIU restores the original PIDs, so the restore first waits until the
root PID is free. The log and PID file paths are relative to ``-D``; CRIU needs the
image directory to be writable.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import time
from pathlib import Path
from typing import Any

from cryostash.engines.criu_binary import (
    Located,
    check_and_features,
    default_prefix,
    is_harmless,
    is_recent,
    locate_criu,
    prefix_criu_path,
    too_old_reason,
)
from cryostash.engines.criu_hints import explain
from cryostash.engines.criu_images import (
    read_dump_stats,
    read_restore_stats,
    read_root_pid,
    trim_log,
)
from cryostash.engines.criu_pids import describe, pid_dead, validate_pid, wait, wait_for_pid
from cryostash.errors import EngineError, UsageError
from cryostash.redact import child_env
from cryostash.types import Availability, DumpOptions, DumpStats, RestoreOptions, RestoreResult

#: Written into the image directory: CRIU version, root PID and dump options.
SIDECAR = "cryostash-criu.json"
#: Dump options CRIU needs again at restore.
MIRRORED_OPTIONS = frozenset(
    {"--shell-job", "-j", "--tcp-established", "--ext-unix-sk", "--file-locks"}
)
LOG_TAIL_LINES = 10
#: An error line of a CRIU log, with or without the PID a restored task's lines carry:
#: ``(00.34) Error (criu/x.c:1): WHAT`` or ``(00.34)      1: Error (criu/x.c:1): WHAT``.
_ERROR_RE = re.compile(r"^\([\d.]+\)\s+(?:\d+:\s+)?Error \([^)]*\):\s*")


def failure_message(
    action: str, code: int, log_path: Path, stderr: str, stdout: str = "", *, head: str = ""
) -> str:
    """The reason a CRIU run failed: its first error (explained when
    :func:`~cryostash.engines.criu_hints.explain` knows it), then the tail of its log.

    CRIU's own ``stderr`` and ``stdout`` stand in for the log when there is none
    (e.g. an unknown option). The harmless RLIMIT_NOFILE error is left out. The first
    error is the cause; later ones are its consequences (a restore that failed in a task
    ends with ``Restoring FAILED`` and ``cg: cgroupd: recv req error``).
    ``head`` replaces the opening ``criu ACTION failed (exit N)`` (e.g. for the
    container runtime that ran CRIU).
    """
    try:
        lines = log_path.read_text(errors="replace").splitlines()
    except OSError:
        lines = []
    source = log_path.name if lines else "output"
    err_lines = [line for line in stderr.splitlines() if line.strip()]
    out_lines = [line for line in stdout.splitlines() if line.strip()]
    lines = [line.rstrip() for line in lines or [*err_lines, *out_lines] if not is_harmless(line)]
    errors = [line for line in lines if _ERROR_RE.match(line)]
    candidates = [
        *(_ERROR_RE.sub("", line) for line in errors if "FAILED" not in line),
        *(line for line in err_lines if not is_harmless(line)),
        *(_ERROR_RE.sub("", line) for line in errors),
        *out_lines[-1:],
        f"exit status {code}",
    ]
    tail = lines[-LOG_TAIL_LINES:]
    earlier = [line for line in errors if line not in tail][:5]
    body = [*earlier, *(["..."] if earlier else []), *tail]
    head = head or f"criu {action} failed (exit {code})"
    cause = candidates[0].strip()
    hint = explain(cause)
    return f"{head}: {cause}\n" + "\n".join(
        [*([f"That is: {hint}."] if hint else []), f"--- last lines of criu {source} ---", *body]
    )


class CriuEngine:
    """Checkpoint/restore a process tree by PID with the ``criu`` binary (>= 4.2).

    Args:
        criu_path: the CRIU binary (``--criu`` / ``CRYOSTASH_CRIU``). When None, the
            ``CRYOSTASH_CRIU`` environment variable, else the provisioned prefix
            (:func:`~cryostash.engines.criu_binary.default_prefix`), else ``criu``
            on PATH; a PATH CRIU older than 4.2 loses to the prefix.
    """

    name = "criu"

    def __init__(self, criu_path: str | None = None) -> None:
        self._explicit = criu_path or os.environ.get("CRYOSTASH_CRIU") or None
        self._located: Located | None = None
        self._availability: Availability | None = None

    # -- binary --------------------------------------------------------------

    def locate(self) -> Located:
        """The CRIU binary this engine uses (looked up once per instance)."""
        if self._located is None:
            self._located = locate_criu(self._explicit, prefix_criu_path(default_prefix()))
        return self._located

    def binary(self) -> tuple[str, str]:
        """(path, version) of a usable CRIU, or EngineError saying why there is none."""
        found = self.locate()
        if found.path is None:
            raise EngineError(self._not_found())
        if found.version is None:
            raise EngineError(f"CRIU at {found.path} does not run or report its version")
        if not is_recent(found.version):
            raise EngineError(too_old_reason(found.version, found.path))
        return found.path, found.version

    @staticmethod
    def _not_found() -> str:
        return (
            "CRIU not found (looked for the provisioned "
            f"{prefix_criu_path(default_prefix())} and `criu` on PATH): run "
            "`python -m cryostash.install.criu` as root, or pass --criu PATH"
        )

    def available(self) -> Availability:
        """Whether CRIU >= 4.2 is here and ``criu check`` passes; probes a few features.

        Features (``criu check --feature``): ``mem_dirty_track`` (incremental dumps),
        ``uffd-noncoop`` (lazy pages), ``network_lock_nftables``. Computed once per
        instance (about 0.1 s). Never raises.
        """
        if self._availability is None:
            self._availability = self._probe()
        return self._availability

    def _probe(self) -> Availability:
        found = self.locate()
        if found.path is None:
            return Availability(ok=False, reason=self._not_found())
        if found.version is None:
            return Availability(
                ok=False,
                path=found.path,
                reason=f"CRIU at {found.path} does not run or report a version",
            )
        if not is_recent(found.version):
            return Availability(
                ok=False,
                version=found.version,
                path=found.path,
                reason=too_old_reason(found.version, found.path),
            )
        passed, output, features = check_and_features(found.path)
        reason = None if passed else f"`criu check` failed: {output or 'no output'}"
        return Availability(
            ok=passed, version=found.version, path=found.path, reason=reason, features=features
        )

    # -- dump ----------------------------------------------------------------

    def check_locator(self, locator: str) -> None:
        """Refuse, before any work, a ``locator`` this engine cannot dump (the optional
        engine method :func:`cryostash.operations.create.check_locator` calls).

        Raises:
            UsageError: not a PID, no process with that PID, ... (:func:`validate_pid`).
        """
        validate_pid(locator)

    def dump(self, locator: str, image_dir: Path, options: DumpOptions) -> DumpStats:
        """Checkpoint the process tree rooted at PID ``locator`` into ``image_dir``.

        See :meth:`cryostash.engines.base.Engine.dump` and the module docstring.

        Raises:
            UsageError: ``locator`` is not a PID this engine may dump.
            EngineError: no usable CRIU, or the dump failed (reason and log tail).
        """
        _refuse_podman_only(options.extra_args)
        pid = validate_pid(locator)
        criu, version = self.binary()
        opts = [*(["--leave-running"] if options.leave_running else []), *options.extra_args]
        cmd = [criu, "dump", "-t", str(pid), "-D", str(image_dir), "-o", "dump.log", "-v4", *opts]
        started = time.monotonic()
        code, err, out = _run(cmd)
        if code != 0:
            raise EngineError(failure_message("dump", code, image_dir / "dump.log", err, out))
        if not options.leave_running:
            wait(lambda: pid_dead(pid), 10.0)
        duration = time.monotonic() - started
        sidecar = {
            "format": 1,
            "criu_version": version,
            "root_pid": pid,
            "options": list(options.extra_args),
        }
        (image_dir / SIDECAR).write_text(json.dumps(sidecar, indent=2) + "\n")
        trim_log(image_dir / "dump.log")  # head and tail only: not ~440 KB per checkpoint
        details: dict[str, Any] = dict(read_dump_stats(image_dir))
        details["criu_options"] = opts
        return DumpStats(duration_s=duration, root_pid=pid, engine_version=version, details=details)

    # -- restore -------------------------------------------------------------

    def restore(self, image_dir: Path, options: RestoreOptions) -> RestoreResult:
        """Restore the tree dumped in ``image_dir``, detached; return its root PID.

        Waits up to ``options.wait_for_pid_s`` for the root PID (``options.root_pid``,
        else the one recorded in the images) to be free; when it has to wait, it says so
        first through ``options.notify``.

        Raises:
            UsageError: ``options.container`` or ``options.bundle`` is set (a process
                tree has neither).
            EngineError: no usable CRIU, the PID is still in use, or the restore failed.
        """
        if options.container or options.bundle:
            raise UsageError(
                "--as and --bundle apply to container engines (runc, podman, docker), "
                "not to a criu checkpoint of a process tree"
            )
        _refuse_podman_only(options.extra_args)
        criu, _version = self.binary()
        root_pid = options.root_pid or read_root_pid(image_dir)
        if root_pid is not None and not wait_for_pid(root_pid, options):
            raise EngineError(
                f"PID {root_pid} is still in use by {describe(root_pid)} after "
                f"{options.wait_for_pid_s:g} s: CRIU restores the original PIDs; stop that "
                "process (and have it reaped) first"
            )
        opts = [*self.mirrored_options(image_dir, options.extra_args), *options.extra_args]
        pidfile = image_dir / "restore.pid"
        pidfile.unlink(missing_ok=True)
        cmd = [
            criu,
            "restore",
            "-D",
            str(image_dir),
            "-d",
            "--pidfile",
            pidfile.name,
            "-o",
            "restore.log",
            "-v4",
            *opts,
        ]
        started = time.monotonic()
        code, err, out = _run(cmd)
        duration = time.monotonic() - started
        if code != 0:
            log_path = image_dir / "restore.log"
            raise EngineError(failure_message("restore", code, log_path, err, out))
        try:
            pid = int(pidfile.read_text().strip())
        except (OSError, ValueError) as exc:
            raise EngineError(f"criu restore succeeded but wrote no PID file: {exc}") from exc
        details: dict[str, Any] = dict(read_restore_stats(image_dir))
        details["criu_options"] = opts
        return RestoreResult(pid=pid, duration_s=duration, details=details)

    @staticmethod
    def mirrored_options(image_dir: Path, extra: tuple[str, ...]) -> list[str]:
        """Dump options recorded in ``image_dir``'s sidecar that restore needs too
        (:data:`MIRRORED_OPTIONS`) and ``extra`` lacks; none if the sidecar is unreadable."""
        try:
            recorded = json.loads((image_dir / SIDECAR).read_text()).get("options", [])
        except (OSError, ValueError, AttributeError):
            return []
        return [o for o in recorded if o in MIRRORED_OPTIONS and o not in extra]



def _refuse_podman_only(extra: tuple[str, ...]) -> None:
    """UsageError for options that only the podman engine takes (``--ignore-rootfs``)."""
    if "--ignore-rootfs" in extra:
        raise UsageError("--ignore-rootfs applies only to the podman engine")


def _run(cmd: list[str]) -> tuple[int, str, str]:
    """Run CRIU: (exit status, stderr, stdout). No timeout: a big dump takes its time."""
    try:
        proc = subprocess.run(
            cmd, stdin=subprocess.DEVNULL, capture_output=True, env=child_env(), check=False
        )
    except OSError as exc:
        raise EngineError(f"cannot run {cmd[0]}: {exc}") from exc
    return (
        proc.returncode,
        proc.stderr.decode(errors="replace"),
        proc.stdout.decode(errors="replace"),
    )
