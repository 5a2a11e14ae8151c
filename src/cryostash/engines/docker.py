"""The ``docker`` engine: Docker's own checkpoints, through the Engine API.

Locator: the container name or id. The container must be running, and dockerd must
run with ``--experimental`` (checkpoints are an experimental feature of dockerd).

Dump: ``POST /containers/ID/checkpoints`` with ``CheckpointDir`` = the scratch folder
(what ``docker checkpoint create --checkpoint-dir DIR [--leave-running] ID checkpoint``
does): dockerd has runc and CRIU write ``DIR/checkpoint/``. ``cryostash-docker.json``
records the container's name, id, image and its configuration as ``docker inspect``
reports it (``Config`` and ``HostConfig``). Docker's checkpoints take no CRIU options.

The side-file is untrusted (it comes from the store): its ``checkpoint`` folder must be
the fixed name ``checkpoint`` (anything else, an absolute path or ``..``, is refused with
IntegrityError), and a container is re-created from a create request rebuilt by
allow-list from the recorded ``Config`` and ``HostConfig``
(:mod:`~cryostash.engines.docker_config`): harmless fields are copied, any other field
not at its default needs ``restore --allow WHAT`` naming it; otherwise UsageError
listing each.

Restore: ``docker start --checkpoint-dir`` is broken in dockerd ("custom checkpointdir
is not supported"), so the fetched checkpoint is placed where ``docker start
--checkpoint NAME`` looks: ``DATA_ROOT/containers/<id>/checkpoints/NAME``, with
``DATA_ROOT`` from ``GET /info`` (``docker info --format '{{.DockerRootDir}}'``). The
container is the recorded one (or ``--as NAME``): an existing, stopped container is
used (it must come from the same image); a missing one is created from the recorded
configuration (its image must be on this host). Then ``POST /containers/ID/start
?checkpoint=NAME``, and the placed folder is removed. A container this restore created
is removed again if the restore fails.

Docker's daemon runs CRIU itself (dockerd -> containerd -> runc -> ``criu`` on the
daemon's ``PATH``): cryostash cannot hand it its CRIU. Start dockerd (and containerd)
with CRIU >= 4.2 first on their ``PATH`` (e.g. ``PATH=/opt/cryostash/criu/bin:$PATH``).
"""

from __future__ import annotations

import contextlib
import os
import shutil
import time
import uuid
from pathlib import Path
from typing import Any

from cryostash.engines.containers import (
    LONG_TIMEOUT_S,
    read_sidecar,
    runtime_failure,
    write_sidecar,
)
from cryostash.engines.criu_images import read_dump_stats, read_restore_stats
from cryostash.engines.criu_pids import wait
from cryostash.engines.docker_api import ApiError, DockerAPI, socket_path
from cryostash.engines.docker_config import rebuild
from cryostash.errors import EngineError, IntegrityError, UsageError
from cryostash.redact import escape
from cryostash.types import Availability, DumpOptions, DumpStats, RestoreOptions, RestoreResult

SIDECAR = "cryostash-docker.json"
#: Name of the checkpoint inside the scratch folder (``DIR/checkpoint/``).
CHECKPOINT_ID = "checkpoint"
#: Name under which a fetched checkpoint is placed in the container's folder.
RESTORE_ID = "cryostash-restore"
STOP_TIMEOUT_S = 30.0


class DockerEngine:
    """Checkpoint/restore Docker containers by name or id (daemon on this host).

    Args:
        criu_path: accepted for the registry's sake and ignored: dockerd runs its own CRIU.
        socket: the daemon's unix socket (default: from ``$DOCKER_HOST``, see
            :func:`~cryostash.engines.docker_api.socket_path`).
    """

    name = "docker"

    def __init__(self, criu_path: str | None = None, socket: str | None = None) -> None:
        self._socket = socket

    def api(self) -> DockerAPI:
        """A client for the daemon (EngineError when ``DOCKER_HOST`` is not a unix socket)."""
        return DockerAPI(self._socket or socket_path())

    def available(self) -> Availability:
        """dockerd answers on its socket, runs ``--experimental``, its data root is here."""
        try:
            api = self.api()
        except EngineError as exc:
            return Availability(ok=False, reason=str(exc))
        if not os.path.exists(api.path):
            return Availability(
                ok=False,
                path=api.path,
                reason=f"no dockerd socket at {api.path} (is dockerd running? "
                "DOCKER_HOST=unix:///PATH names another one)",
            )
        try:
            version = _daemon_version(api)
            info = api.info()
        except EngineError as exc:
            return Availability(ok=False, path=api.path, reason=str(exc))
        experimental = bool(info.get("ExperimentalBuild"))
        root = str(info.get("DockerRootDir") or "")
        reason = None
        if os.geteuid() != 0:
            reason = "docker checkpoints need root (the daemon's data root is root's)"
        elif not experimental:
            reason = (
                "dockerd runs without --experimental: checkpoints need it "
                '(dockerd --experimental, or "experimental": true in daemon.json)'
            )
        elif not root or not os.path.isdir(root):
            reason = f"dockerd's data root {root or '(unknown)'} is not a folder on this host"
        return Availability(
            ok=reason is None,
            version=version,
            path=api.path,
            reason=reason,
            features={"experimental": experimental},
        )

    # -- dump ----------------------------------------------------------------------

    def dump(self, locator: str, image_dir: Path, options: DumpOptions) -> DumpStats:
        """Checkpoint the running container ``locator`` into ``image_dir/checkpoint``.

        Raises:
            UsageError: extra options were given, no such container, or not running.
            EngineError: dockerd cannot be reached, or the checkpoint failed.
        """
        if options.extra_args:
            raise UsageError(
                f"the docker engine takes no checkpoint options (dockerd accepts none): "
                f"{' '.join(options.extra_args)}"
            )
        api = self.api()
        info = api.container(locator)
        if info is None:
            raise UsageError(f"no docker container {locator!r} (see `docker ps -a`)")
        state = info.get("State") or {}
        if not state.get("Running"):
            raise UsageError(
                f"docker container {locator!r} is {state.get('Status', 'not running')}, "
                "not running"
            )
        cid = str(info["Id"])
        body = {
            "CheckpointID": CHECKPOINT_ID,
            "CheckpointDir": str(image_dir),
            "Exit": not options.leave_running,
        }
        started = time.monotonic()
        try:
            api.call("POST", f"/containers/{cid}/checkpoints", body=body, timeout=LONG_TIMEOUT_S)
        except ApiError as exc:
            raise EngineError(_failure("checkpoint create", exc)) from exc
        if not options.leave_running and not wait(
            lambda: not ((api.container(cid) or {}).get("State") or {}).get("Running"),
            STOP_TIMEOUT_S,
            interval=0.05,
        ):
            raise EngineError(f"container {locator} still runs {STOP_TIMEOUT_S:g} s after its dump")
        duration = time.monotonic() - started
        version = _daemon_version(api)
        write_sidecar(
            image_dir,
            SIDECAR,
            {
                "container_name": str(info.get("Name") or locator).lstrip("/"),
                "container_id": cid,
                "image": (info.get("Config") or {}).get("Image"),
                "image_id": info.get("Image"),
                "config": info.get("Config") or {},
                "host_config": info.get("HostConfig") or {},
                "docker_version": version,
                "checkpoint": CHECKPOINT_ID,
            },
        )
        details: dict[str, Any] = dict(read_dump_stats(image_dir / CHECKPOINT_ID))
        details.update(container=str(info.get("Name") or locator).lstrip("/"), id=cid)
        return DumpStats(
            duration_s=duration,
            root_pid=state.get("Pid") or None,
            engine_version=version,
            details=details,
        )

    # -- restore -------------------------------------------------------------------

    def restore(self, image_dir: Path, options: RestoreOptions) -> RestoreResult:
        """Start the recorded container (or ``--as NAME``) from the checkpoint; its PID.

        Raises:
            UsageError: ``--bundle`` or extra options were given.
            EngineError: dockerd cannot be reached, the container runs or comes from
                another image, its image is missing, or the start failed.
        """
        if options.bundle:
            raise UsageError("--bundle applies only to the runc engine")
        if options.extra_args:
            raise UsageError("the docker engine takes no restore options (dockerd accepts none)")
        record = read_sidecar(image_dir, SIDECAR, "docker")
        if record.get("checkpoint", CHECKPOINT_ID) != CHECKPOINT_ID:  # untrusted: fixed name
            raise IntegrityError(
                f"the docker side-file names checkpoint folder "
                f"{escape(str(record.get('checkpoint')))!r}: only {CHECKPOINT_ID!r} is accepted"
            )
        source = image_dir / CHECKPOINT_ID
        if not source.is_dir() or source.is_symlink():
            raise EngineError(f"the checkpoint has no {source.name}/ folder: made by docker?")
        api = self.api()
        root = Path(str(api.info().get("DockerRootDir") or ""))
        if not root.is_absolute() or not root.is_dir():
            raise EngineError(f"dockerd's data root {str(root)!r} is not a folder on this host")
        name = options.container or str(record.get("container_name") or "")
        if not name:
            raise EngineError("the checkpoint records no container name: pass --as NAME")
        cid, created = self._target(api, name, record, options.allow)
        placed = root / "containers" / cid / "checkpoints" / RESTORE_ID
        started = time.monotonic()
        try:
            if not placed.parent.parent.is_dir():
                raise EngineError(f"{placed.parent.parent} is not on this host: is dockerd local?")
            shutil.rmtree(placed, ignore_errors=True)
            shutil.copytree(source, placed, symlinks=True)
            # dockerd uploads the folder to containerd as a tar; with the dump's bytes and
            # times its digest can equal the dump's own upload, which containerd may still
            # hold ("commit failed: content sha256:...: already exists"). A file unique to
            # this restore makes the digest unique (runc and CRIU ignore it).
            (placed / "cryostash-restore.id").write_text(uuid.uuid4().hex + "\n")
            try:
                api.call(
                    "POST",
                    f"/containers/{cid}/start",
                    query={"checkpoint": RESTORE_ID},
                    timeout=LONG_TIMEOUT_S,
                )
            except ApiError as exc:
                raise EngineError(_failure("start --checkpoint", exc)) from exc
        except BaseException:
            if created:
                with contextlib.suppress(EngineError):
                    api.call("DELETE", f"/containers/{cid}", query={"force": "1", "v": "0"})
            raise
        finally:
            shutil.rmtree(placed, ignore_errors=True)
        duration = time.monotonic() - started
        state = (api.container(cid) or {}).get("State") or {}
        pid = int(state.get("Pid") or 0)
        if pid <= 0:
            raise EngineError(f"docker restored container {name} but it is not running")
        details: dict[str, Any] = dict(read_restore_stats(source))
        details.update(container=name, id=cid, created=created)
        return RestoreResult(pid=pid, duration_s=duration, details=details)

    @staticmethod
    def _target(
        api: DockerAPI, name: str, record: dict[str, Any], allow: frozenset[str]
    ) -> tuple[str, bool]:
        """(id of the container to start, whether it was created now). A container is
        created from the body :func:`~cryostash.engines.docker_config.rebuild` makes of
        the recorded configuration (harmless fields, and those ``allow`` names); else
        UsageError listing what it would need."""
        existing = api.container(name)
        if existing is not None:
            if (existing.get("State") or {}).get("Running"):
                raise EngineError(
                    f"docker container {name} is running: stop or remove it, or restore "
                    "--as NEW_NAME"
                )
            if record.get("image_id") and existing.get("Image") != record.get("image_id"):
                raise EngineError(
                    f"docker container {name} runs image {existing.get('Image')}, the "
                    f"checkpoint was made from {record.get('image_id')}: restore --as NEW_NAME"
                )
            return str(existing["Id"]), False
        body = rebuild(record, allow, name)
        try:
            made = api.call("POST", "/containers/create", query={"name": name}, body=body)
        except ApiError as exc:
            hint = ""
            if exc.status == 404:
                hint = f" (load or import image {record.get('image')} on this host first)"
            raise EngineError(f"cannot create container {name}: {exc}{hint}") from exc
        return str(made["Id"]), True


def _failure(action: str, exc: ApiError) -> str:
    """dockerd's error, with CRIU's first error and log tail when it names the log."""
    return runtime_failure(f"docker {action} failed", str(exc))


def _daemon_version(api: DockerAPI) -> str | None:
    """The version dockerd reports (``GET /version``), or None when it does not say."""
    return str(api.version().get("Version") or "") or None
