"""Where a container checkpoint archive was made, read from the archive itself.

An imported archive (:mod:`cryostash.operations.import_archive`) was made on another
node, by another engine; what cryostash records of it comes from its members, never from
this host:

- the **engine**, told apart as checkpointctl tells them apart, by ``spec.dump``'s
  annotation ``io.container.manager``: ``cri-o`` -> ``crio`` (the kubelet's archives),
  ``libpod`` -> ``podman``; none, with containerd's CRI annotations
  (``io.kubernetes.cri.*``) -> ``containerd``; anything else -> ``podman`` (the format
  Podman restores). :data:`RESTORED_ELSEWHERE` names the engines no engine of cryostash
  restores;
- the node's **host name and kernel** and the **CRIU version**, from CRIU's log of the
  dump (``dump.log``, at the top or in ``checkpoint/``): its ``Version: V`` and
  ``Running on NODE Linux RELEASE ...`` lines, the first 64 KiB read at most;
- CRIU's **dump statistics** (``stats-dump``, at the top as Podman and CRI-O write it, or
  in ``checkpoint/``): freezing and frozen time (microseconds), pages scanned and written;
- the OCI **runtime** (``config.dump``'s ``runtime``, e.g. ``runc``, ``crun``).

Everything is untrusted: a value holding a control character, or longer than the catalog
takes, is left out (the import records this host's instead), never an error.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cryostash.engines.criu_images import read_dump_stats
from cryostash.names import MAX_HOST_LENGTH
from cryostash.redact import has_control

#: The engines that make checkpoint archives, by the name cryostash records.
ARCHIVE_ENGINES = ("podman", "crio", "containerd")
#: Engines whose archives no engine of cryostash restores: who does.
RESTORED_ELSEWHERE = {"crio": "CRI-O", "containerd": "containerd"}
#: How much of ``dump.log`` is read for its first lines.
LOG_HEAD = 64 << 10
_RUNNING = re.compile(rb"Running on (\S+) (\S+) (\S+)")
_VERSION = re.compile(rb"Version: (\S+)")


@dataclass(frozen=True)
class Origin:
    """What the archive says of where it was made (None: it does not say)."""

    engine: str
    host: str | None = None
    kernel: str | None = None
    criu_version: str | None = None
    runtime: str | None = None
    criu_stats: dict[str, int] = field(default_factory=dict)

    def details(self) -> dict[str, Any]:
        """The engine statistics recorded for the import (CRIU's, with ``_us`` times)."""
        out: dict[str, Any] = dict(self.criu_stats)
        for key in ("host", "kernel", "criu_version", "runtime"):
            value = getattr(self, key)
            if value is not None:
                out[f"archive_{key}" if key in ("host", "kernel") else key] = value
        return out


def _text(value: object, longest: int = MAX_HOST_LENGTH) -> str | None:
    if not isinstance(value, str | bytes):
        return None
    text = value.decode("utf-8", "replace") if isinstance(value, bytes) else value
    return text if text and len(text) <= longest and not has_control(text) else None


def _json(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_bytes())
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def archive_engine(spec: dict[str, Any]) -> str:
    """``crio``, ``podman`` or ``containerd`` from ``spec.dump`` (see the module docstring)."""
    notes = spec.get("annotations")
    notes = notes if isinstance(notes, dict) else {}
    manager = notes.get("io.container.manager")
    if manager == "cri-o":
        return "crio"
    if manager is None and any(str(k).startswith("io.kubernetes.cri.") for k in notes):
        return "containerd"
    return "podman"


def _first(members: Path, *names: str) -> Path | None:
    return next((members / n for n in names if (members / n).is_file()), None)


def read_origin(members: Path) -> Origin:
    """The origin of the archive whose members are under ``members`` (never raises)."""
    engine = archive_engine(_json(members / "spec.dump"))
    host = kernel = version = None
    log = _first(members, "dump.log", "checkpoint/dump.log")
    if log is not None:
        try:
            with log.open("rb") as fh:
                head = fh.read(LOG_HEAD)
        except OSError:
            head = b""
        running, found = _RUNNING.search(head), _VERSION.search(head)
        if running:
            host, kernel = _text(running.group(1)), _text(running.group(3))
        version = _text(found.group(1)) if found else None
    stats = _first(members, "stats-dump", "checkpoint/stats-dump")
    return Origin(
        engine, host, kernel, version,
        _text(_json(members / "config.dump").get("runtime")),
        read_dump_stats(stats.parent) if stats is not None else {},
    )
