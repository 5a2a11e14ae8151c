"""The ``runc`` engine: checkpoint and restore a runc container with cryostash's CRIU.

Locator: the container id (``runc list``). The container must be running.

Dump: ``runc [--root R] --criu CRIU checkpoint --image-path DIR --work-path DIR
[--leave-running] [extra] ID``. Without ``--leave-running`` runc stops and deletes
the container once dumped. CRIU's ``dump.log`` stays in ``DIR`` (it travels with the
checkpoint). ``cryostash-runc.json`` records what restore needs: the container id,
its bundle folder, the runc and CRIU versions and the dump options (those CRIU needs
again, ``--tcp-established``, ``--file-locks``, ``--ext-unix-sk``, ``--shell-job``,
are passed again at restore).

Restore: ``runc [--root R] --criu CRIU restore --detach --image-path DIR --work-path
DIR --bundle BUNDLE --pid-file DIR/restore.pid [options] ID`` into the recorded id
(or ``--as NEW_ID``) and the bundle ``--bundle DIR`` names (required: the recorded
bundle path comes from the store and is only named in the error). The bundle's ``config.json``
and root filesystem must be those the container ran with (same files, same bind
mount destinations; a bind mount's host folder may differ). The id must be free.

Needs root, ``runc`` (``$CRYOSTASH_RUNC`` or on PATH), CRIU >= 4.2 and
``iptables-restore`` (CRIU locks a container's network namespace with iptables).
``$CRYOSTASH_RUNC_ROOT`` is runc's ``--root`` (state folder, default ``/run/runc``).
A container whose standard descriptors are files outside it cannot be dumped
(CRIU: "Can't lookup mount"); ``/dev/null`` and pipes can.
"""

from __future__ import annotations

import json
import os
import shutil
import time
from pathlib import Path
from typing import Any

from cryostash.engines.containers import (
    LONG_TIMEOUT_S,
    MIRRORED_OPTIONS,
    Completed,
    RuntimeEngine,
    check_options,
    find_binary,
    mirrored,
    read_sidecar,
    require_criu,
    run_tool,
    write_sidecar,
)
from cryostash.engines.criu import failure_message
from cryostash.engines.criu_images import read_dump_stats, read_restore_stats
from cryostash.errors import EngineError, UsageError
from cryostash.redact import escape
from cryostash.types import DumpOptions, DumpStats, RestoreOptions, RestoreResult

SIDECAR = "cryostash-runc.json"


class RuncEngine(RuntimeEngine):
    """Checkpoint/restore runc containers by id.

    Args:
        criu_path: the CRIU binary (as for :class:`~cryostash.engines.criu.CriuEngine`).
        runc_path: the runc binary (default ``$CRYOSTASH_RUNC``, else ``runc`` on PATH).
        root: runc's state folder (default ``$CRYOSTASH_RUNC_ROOT``, else runc's own).
    """

    name = "runc"
    install_hint = "apt-get install runc; or $CRYOSTASH_RUNC"

    def __init__(
        self, criu_path: str | None = None, runc_path: str | None = None, root: str | None = None
    ) -> None:
        super().__init__(runc_path or find_binary("CRYOSTASH_RUNC", "runc"), criu_path)
        self._root = root or os.environ.get("CRYOSTASH_RUNC_ROOT") or None

    # -- availability ------------------------------------------------------------

    def _base(self) -> list[str]:
        if self._binary is None:
            raise EngineError("runc not found (set $CRYOSTASH_RUNC or put runc on PATH)")
        return [self._binary, *(["--root", self._root] if self._root else [])]

    def missing(self) -> str | None:
        """iptables-restore, with which CRIU locks a runc container's network."""
        if shutil.which("iptables-restore") is None:
            return (
                "iptables-restore not found: CRIU locks a runc container's network with "
                "iptables (apt-get install iptables)"
            )
        return None

    # -- state ---------------------------------------------------------------------

    def state(self, container: str) -> dict[str, Any] | None:
        """``runc state ID`` as a dict, or None when there is no such container."""
        done = run_tool([*self._base(), "state", container])
        if done.code != 0:
            return None
        try:
            value = json.loads(done.out)
        except ValueError:
            return None
        return value if isinstance(value, dict) else None

    # -- dump ----------------------------------------------------------------------

    def dump(self, locator: str, image_dir: Path, options: DumpOptions) -> DumpStats:
        """Checkpoint the running runc container ``locator`` into ``image_dir``.

        Raises:
            UsageError: no such container, it is not running, or an option for another
                engine was given.
            EngineError: no usable runc or CRIU, or the checkpoint failed (with the
                first CRIU error and the tail of ``dump.log``).
        """
        extra = check_options(options.extra_args, "runc", frozenset())
        base = self._base()
        state = self.state(locator)
        if state is None:
            raise UsageError(f"no runc container {locator!r} (see `runc list`)")
        if state.get("status") != "running":
            raise UsageError(f"runc container {locator!r} is {state.get('status')}, not running")
        criu = require_criu(self._criu, "runc")
        criu_version = self._criu.available().version
        opts = [*(["--leave-running"] if options.leave_running else []), *extra]
        cmd = [*base, "--criu", criu, "checkpoint", "--image-path", str(image_dir)]
        cmd += ["--work-path", str(image_dir), *opts, locator]
        started = time.monotonic()
        done = run_tool(cmd, timeout=LONG_TIMEOUT_S)
        if done.code != 0:
            raise EngineError(_failure("checkpoint", done, image_dir / "dump.log"))
        duration = time.monotonic() - started
        write_sidecar(
            image_dir,
            SIDECAR,
            {
                "container_id": state.get("id", locator),
                "bundle": state.get("bundle"),
                "pid": state.get("pid"),
                "runc_version": self.version(),
                "criu_version": criu_version,
                "options": list(extra),
            },
        )
        details: dict[str, Any] = dict(read_dump_stats(image_dir))
        details.update(container=locator, bundle=state.get("bundle"), runc_options=opts)
        return DumpStats(
            duration_s=duration,
            root_pid=state.get("pid"),
            engine_version=f"{self.version()} (criu {criu_version})",
            details=details,
        )

    # -- restore -------------------------------------------------------------------

    def restore(self, image_dir: Path, options: RestoreOptions) -> RestoreResult:
        """Restore the container dumped in ``image_dir``, detached; return its init's PID.

        Raises:
            EngineError: no usable runc or CRIU, the id is taken, the bundle has no
                ``config.json``, or the restore failed (first error and log tail).
        """
        base = self._base()
        record = read_sidecar(image_dir, SIDECAR, "runc")
        container = options.container or str(record.get("container_id") or "")
        bundle = options.bundle or ""
        if not container:
            raise EngineError("the checkpoint records no container id: pass --as ID")
        if not bundle:  # a path from the store is never used unconfirmed
            recorded_bundle = escape(str(record.get("bundle") or "(none recorded)"))
            raise UsageError(
                f"runc restore needs --bundle DIR, the OCI bundle to restore into (the "
                f"checkpoint was made from {recorded_bundle}; a path read from the store is "
                "not used without your confirmation)"
            )
        if not (Path(bundle) / "config.json").is_file():
            raise EngineError(
                f"bundle {bundle or '(none recorded)'!r} has no config.json: pass --bundle DIR, "
                "the OCI bundle (config.json and root filesystem) the container ran with"
            )
        if self.state(container) is not None:
            raise EngineError(
                f"runc container {container!r} already exists: delete it "
                "(`runc delete -f ID`) or restore --as NEW_ID"
            )
        criu = require_criu(self._criu, "runc")
        recorded = [str(o) for o in record.get("options", [])]
        opts = [*mirrored(recorded, options.extra_args, MIRRORED_OPTIONS), *options.extra_args]
        check_options(opts, "runc", frozenset())
        pidfile = image_dir / "restore.pid"
        pidfile.unlink(missing_ok=True)
        cmd = [*base, "--criu", criu, "restore", "--detach", "--image-path", str(image_dir)]
        cmd += ["--work-path", str(image_dir), "--bundle", bundle, "--pid-file", str(pidfile)]
        cmd += [*opts, container]
        started = time.monotonic()
        done = run_tool(cmd, timeout=LONG_TIMEOUT_S)
        duration = time.monotonic() - started
        if done.code != 0:
            raise EngineError(_failure("restore", done, image_dir / "restore.log"))
        try:
            pid = int(pidfile.read_text().strip())
        except (OSError, ValueError) as exc:
            raise EngineError(f"runc restore succeeded but wrote no PID file: {exc}") from exc
        details: dict[str, Any] = dict(read_restore_stats(image_dir))
        details.update(container=container, bundle=bundle, runc_options=opts)
        return RestoreResult(pid=pid, duration_s=duration, details=details)


def _failure(action: str, done: Completed, log_path: Path) -> str:
    """runc's failure with CRIU's first error and log tail (when CRIU ran)."""
    head = f"runc {action} failed (exit {done.code})"
    if not log_path.exists():
        return f"{head}: {done.first_error()}"
    return failure_message(action, done.code, log_path, done.err, done.out, head=head)
