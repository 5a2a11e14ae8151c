"""The ``podman`` engine: ``podman container checkpoint --export`` / ``restore --import``.

Locator: the container name or id. The container must be running.

Dump: ``podman container checkpoint --export DIR/checkpoint.tar --compress none
[--leave-running] [--tcp-established] [--file-locks] [--ignore-rootfs] [extra] NAME``.
The archive holds CRIU's images, the container's configuration and (unless
``--ignore-rootfs``) its root filesystem changes, so it restores on another host that
has the same image. It is left uncompressed: the store deduplicates and (later)
compresses. ``cryostash-podman.json`` records the container name, id, image, podman
and CRIU versions and the dump options; those that restore needs too
(``--tcp-established``, ``--file-locks``, ``--ignore-rootfs``) are passed again.

Restore: ``podman container restore --import DIR/checkpoint.tar [--name NEW]
[options]``: a new container, under the recorded name and id, or under ``--as NEW``
(podman then gives it a new id). The name must be free. Volumes and the image must
exist on this host. An imported checkpoint's archive is first rebuilt, bit for bit,
from its members (:mod:`~cryostash.engines.container_archive`).

Podman (and the OCI runtime it starts) find CRIU on ``PATH``: every podman command
runs with a ``PATH`` whose first entry holds cryostash's CRIU (see
:func:`~cryostash.engines.containers.criu_on_path`). Use runc as podman's runtime
(Debian's crun uses the system's libcriu). Needs root. ``$CRYOSTASH_PODMAN`` names
the podman binary; podman's own ``CONTAINERS_CONF`` / ``CONTAINERS_STORAGE_CONF``
are honoured (they are inherited).
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

from cryostash.engines.container_archive import LAYOUT, rebuild_archive
from cryostash.engines.containers import (
    LONG_TIMEOUT_S,
    Completed,
    RuntimeEngine,
    check_options,
    criu_on_path,
    find_binary,
    mirrored,
    read_sidecar,
    require_criu,
    run_tool,
    runtime_failure,
    write_sidecar,
)
from cryostash.errors import EngineError, UsageError
from cryostash.types import DumpOptions, DumpStats, RestoreOptions, RestoreResult

SIDECAR = "cryostash-podman.json"
ARCHIVE = "checkpoint.tar"
#: Dump options that restore needs again (podman takes the same flags at restore).
RESTORE_MIRRORED = frozenset({"--tcp-established", "--file-locks", "--ignore-rootfs"})
PODMAN_OPTIONS = frozenset({"--ignore-rootfs", "--ignore-volumes"})


class PodmanEngine(RuntimeEngine):
    """Checkpoint/restore podman containers by name or id, through an exported archive.

    Args:
        criu_path: the CRIU binary (as for :class:`~cryostash.engines.criu.CriuEngine`).
        podman_path: the podman binary (default ``$CRYOSTASH_PODMAN``, else on PATH).
    """

    name = "podman"
    install_hint = "apt-get install podman; or $CRYOSTASH_PODMAN"

    def __init__(self, criu_path: str | None = None, podman_path: str | None = None) -> None:
        super().__init__(podman_path or find_binary("CRYOSTASH_PODMAN", "podman"), criu_path)

    def _bin(self) -> str:
        if self._binary is None:
            raise EngineError("podman not found (set $CRYOSTASH_PODMAN or put podman on PATH)")
        return self._binary

    def inspect(self, container: str) -> dict[str, Any] | None:
        """``podman container inspect NAME`` (the first object), or None when absent."""
        done = run_tool([self._bin(), "container", "inspect", "--format", "json", container])
        if done.code != 0:
            return None
        try:
            data = json.loads(done.out)
        except ValueError:
            return None
        first = data[0] if isinstance(data, list) and data else None
        return first if isinstance(first, dict) else None

    # -- dump ----------------------------------------------------------------------

    def dump(self, locator: str, image_dir: Path, options: DumpOptions) -> DumpStats:
        """Checkpoint the running podman container ``locator`` into ``image_dir``.

        Raises:
            UsageError: no such container, or it is not running.
            EngineError: no usable podman or CRIU, or the checkpoint failed.
        """
        extra = check_options(options.extra_args, "podman", PODMAN_OPTIONS)
        podman = self._bin()
        info = self.inspect(locator)
        if info is None:
            raise UsageError(f"no podman container {locator!r} (see `podman ps -a`)")
        state = info.get("State") or {}
        if not state.get("Running"):
            raise UsageError(
                f"podman container {locator!r} is {state.get('Status', 'not running')}, "
                "not running"
            )
        criu = require_criu(self._criu, "podman")
        opts = [*(["--leave-running"] if options.leave_running else []), *extra]
        archive = image_dir / ARCHIVE
        cmd = [podman, "container", "checkpoint", "--export", str(archive), "--compress", "none"]
        started = time.monotonic()
        with criu_on_path(criu) as env:
            done = run_tool([*cmd, *opts, locator], env=env, timeout=LONG_TIMEOUT_S)
        if done.code != 0:
            raise EngineError(_failure("checkpoint", done))
        duration = time.monotonic() - started
        name = str(info.get("Name") or locator)
        criu_version = self._criu.available().version
        write_sidecar(
            image_dir,
            SIDECAR,
            {
                "container_name": name,
                "container_id": info.get("Id"),
                "image": info.get("ImageName"),
                "image_id": info.get("Image"),
                "podman_version": self.version(),
                "criu_version": criu_version,
                "options": list(extra),
            },
        )
        details = {
            "container": name,
            "archive_bytes": archive.stat().st_size,
            "podman_options": opts,
        }
        return DumpStats(
            duration_s=duration,
            root_pid=state.get("Pid") or None,
            engine_version=f"{self.version()} (criu {criu_version})",
            details=details,
        )

    # -- restore -------------------------------------------------------------------

    def restore(self, image_dir: Path, options: RestoreOptions) -> RestoreResult:
        """Import the archive in ``image_dir`` as a running container; return its PID.

        Raises:
            UsageError: ``options.bundle`` is set (runc only).
            EngineError: no usable podman or CRIU, the name is taken, or the restore
                failed (podman's message and, when podman names it, CRIU's log tail).
        """
        if options.bundle:
            raise UsageError("--bundle applies only to the runc engine")
        podman = self._bin()
        record = read_sidecar(image_dir, SIDECAR, "podman")
        archive = image_dir / ARCHIVE
        if not archive.is_file() and (image_dir / LAYOUT).is_file():  # imported
            with archive.open("xb") as out:
                rebuild_archive(image_dir, out)
        if not archive.is_file():
            raise EngineError(f"the checkpoint has no {ARCHIVE}: was it made by podman?")
        name = options.container or str(record.get("container_name") or "")
        if name and self.inspect(name) is not None:
            raise EngineError(
                f"a podman container named {name!r} already exists: remove it "
                "(`podman rm -f NAME`) or restore --as NEW_NAME"
            )
        criu = require_criu(self._criu, "podman")
        recorded = [str(o) for o in record.get("options", [])]
        opts = [*mirrored(recorded, options.extra_args, RESTORE_MIRRORED), *options.extra_args]
        check_options(opts, "podman", PODMAN_OPTIONS)
        cmd = [podman, "container", "restore", "--import", str(archive)]
        if options.container:
            cmd += ["--name", options.container]
        started = time.monotonic()
        with criu_on_path(criu) as env:
            done = run_tool([*cmd, *opts], env=env, timeout=LONG_TIMEOUT_S)
        duration = time.monotonic() - started
        if done.code != 0:
            raise EngineError(_failure("restore", done))
        restored = done.out.strip().splitlines()[-1:] or [name]
        info = self.inspect(name or restored[0]) or self.inspect(restored[0]) or {}
        pid = int((info.get("State") or {}).get("Pid") or 0)
        if pid <= 0:
            raise EngineError(f"podman restored {restored[0]} but it is not running")
        details = {"container": info.get("Name", name), "id": info.get("Id")}
        details["podman_options"] = opts
        return RestoreResult(pid=pid, duration_s=duration, details=details)


def _failure(action: str, done: Completed) -> str:
    """podman's error, with CRIU's first error and log tail when podman names the log."""
    head = f"podman container {action} failed (exit {done.code})"
    return runtime_failure(head, f"{done.err}\n{done.out}", done.code)
