"""What a docker side-file may make ``restore`` create: the create request rebuilt by
allow-list.

The docker side-file (``cryostash-docker.json``) comes from the store, so whoever can
write the store chooses its ``config`` and ``host_config``. A container is re-created
from a body rebuilt here, never from the recorded objects themselves:

- a field of :data:`HARMLESS_CONFIG` or :data:`HARMLESS_HOST` (resource limits, restart
  policy, ports, DNS, environment, command...) is copied once its value passes that
  field's check (e.g. ``NetworkMode`` ``bridge`` but not ``host``);
- a field at its default value (absent, null, ``""``, ``0``, ``false``, empty, or the
  value ``docker inspect`` reports for a default container) is left out: the daemon
  applies its own default;
- every other field, or a harmless field with a value that fails its check, is sent only
  if ``restore --allow WHAT`` names its word: the category of :data:`CATEGORIES`
  (``privileged``, ``host-mounts``, ``capabilities``, ``devices``, ``host-namespaces``,
  ``security-opt``) or, for a field outside them, the field's own name
  (``--allow MaskedPaths``, ``--allow VolumesFrom``). Otherwise :func:`rebuild` raises
  UsageError listing each word with what exactly the side-file asks.

Pure functions: no daemon, no I/O.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable
from typing import Any

from cryostash.errors import IntegrityError, UsageError
from cryostash.redact import escape
from cryostash.types import ALLOWABLE

#: ``--allow`` words for a whole kind of privilege (fields outside them: the field name).
CATEGORIES = ALLOWABLE
#: What a field-name ``--allow`` word looks like (a Docker API field: ``MaskedPaths``).
FIELD_WORD = re.compile(r"[A-Z][A-Za-z0-9]{0,63}")

#: ``Config`` fields (the container's own view: command, environment, user inside it...).
HARMLESS_CONFIG = frozenset(
    {
        "Hostname", "Domainname", "User", "AttachStdin", "AttachStdout", "AttachStderr",
        "ExposedPorts", "Tty", "OpenStdin", "StdinOnce", "Env", "Cmd", "Healthcheck",
        "ArgsEscaped", "Image", "Volumes", "WorkingDir", "Entrypoint", "NetworkDisabled",
        "MacAddress", "OnBuild", "Labels", "StopSignal", "StopTimeout", "Shell",
    }
)

#: The paths Docker has masked / made read-only in every container for years: a recorded
#: list holding all of them is the daemon's default (left out: this daemon's own applies).
BASE_MASKED = frozenset(
    {
        "/proc/asound", "/proc/acpi", "/proc/kcore", "/proc/keys", "/proc/latency_stats",
        "/proc/timer_list", "/proc/timer_stats", "/proc/sched_debug", "/proc/scsi",
        "/sys/firmware",
    }
)
BASE_READONLY = frozenset(
    {"/proc/bus", "/proc/fs", "/proc/irq", "/proc/sys", "/proc/sysrq-trigger"}
)

_NAMESPACE_MODES = ("NetworkMode", "PidMode", "IpcMode", "UTSMode", "UsernsMode", "CgroupnsMode")
_SAFE_NETWORK = {"", "default", "bridge", "none"}
_SAFE_IPC = {"", "private", "shareable", "none"}
#: ``CgroupnsMode: host`` is dockerd's own default on cgroup v1.
_SAFE_CGROUPNS = {"", "private", "host"}
_SAFE_LOG_DRIVERS = {"json-file", "local", "none", ""}
_SAFE_RUNTIMES = {"", "runc", "io.containerd.runc.v2"}


#: Fields whose empty value is not a default: an empty list unmasks every path.
_EMPTY_IS_NOT_DEFAULT = frozenset({"MaskedPaths", "ReadonlyPaths"})


def _is_default(value: Any, field: str = "") -> bool:
    """Absent-equivalent: null, or (except for :data:`_EMPTY_IS_NOT_DEFAULT`) ``""``,
    ``0``, ``false``, ``[]``, ``{}``."""
    if value is None:
        return True
    if field in _EMPTY_IS_NOT_DEFAULT:
        return False
    return value in ("", 0, False) or value == [] or value == {}


def _left_out(field: str, value: Any) -> bool:
    """A field at its default, or at the value ``docker inspect`` reports for a default
    container: not sent, the daemon applies its own default."""
    default = _INSPECT_DEFAULTS.get(field)
    return _is_default(value, field) or (default is not None and default(value))


def _any(value: Any) -> bool:
    return True


def _non_negative(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0


def _one_of(choices: Iterable[str]) -> Callable[[Any], bool]:
    allowed = frozenset(choices)
    return lambda value: isinstance(value, str) and value in allowed


def _network(value: Any) -> bool:
    """Docker's default networks, or a user-defined network by name (not ``host``,
    not ``container:ID``)."""
    return isinstance(value, str) and value != "host" and not value.startswith("container:")


def _log_config(value: Any) -> bool:
    return isinstance(value, dict) and str(value.get("Type") or "") in _SAFE_LOG_DRIVERS


#: ``HostConfig`` fields copied when their value passes the check.
HARMLESS_HOST: dict[str, Callable[[Any], bool]] = {
    **{
        name: _non_negative
        for name in (
            "CpuShares", "Memory", "NanoCpus", "CpuPeriod", "CpuQuota", "MemoryReservation",
            "MemorySwap", "BlkioWeight", "CpuCount", "CpuPercent", "IOMaximumIOps",
            "IOMaximumBandwidth", "ShmSize", "OomScoreAdj", "KernelMemory",
            "KernelMemoryTCP",
        )
    },
    "MemorySwappiness": lambda v: v is None or _non_negative(v),
    "PidsLimit": lambda v: v is None or isinstance(v, int),
    "CpusetCpus": _any,
    "CpusetMems": _any,
    "RestartPolicy": _any,
    "AutoRemove": _any,
    "ReadonlyRootfs": _any,
    "PortBindings": _any,
    "PublishAllPorts": _any,
    "Dns": _any,
    "DnsOptions": _any,
    "DnsSearch": _any,
    "ExtraHosts": _any,
    "GroupAdd": _any,
    "Links": _any,
    "Ulimits": _any,
    "Tmpfs": _any,
    "ConsoleSize": _any,
    "Init": _any,
    "CapDrop": _any,
    "LogConfig": _log_config,
    "NetworkMode": _network,
    "IpcMode": _one_of(_SAFE_IPC),
    "CgroupnsMode": _one_of(_SAFE_CGROUPNS),
    "PidMode": _one_of({""}),
    "UTSMode": _one_of({""}),
    "UsernsMode": _one_of({""}),
    "Runtime": _one_of(_SAFE_RUNTIMES),
    "Isolation": _one_of({"", "default"}),
}

#: Values ``docker inspect`` reports for a default container (left out, not refused).
_INSPECT_DEFAULTS: dict[str, Callable[[Any], bool]] = {
    "MaskedPaths": lambda v: isinstance(v, list) and set(map(str, v)) >= BASE_MASKED,
    "ReadonlyPaths": lambda v: isinstance(v, list) and set(map(str, v)) >= BASE_READONLY,
    "OomKillDisable": lambda v: v is False,
    "ContainerIDFile": lambda v: v == "",  # written by the docker CLI, not the daemon
}

_FIELD_CATEGORY = {
    "Privileged": "privileged",
    "Binds": "host-mounts",
    "Mounts": "host-mounts",
    "CapAdd": "capabilities",
    "Devices": "devices",
    "DeviceRequests": "devices",
    "DeviceCgroupRules": "devices",
    "SecurityOpt": "security-opt",
    **{mode: "host-namespaces" for mode in _NAMESPACE_MODES},
}


def _show(value: Any) -> str:
    text = value if isinstance(value, str) else repr(value)
    return text if len(text) <= 120 else text[:117] + "..."


def _host_binds(binds: Any) -> list[str]:
    """The host paths of ``Binds`` entries (``/src:/dst[:opts]``); a named volume
    (``name:/dst``) or an anonymous one (``/dst``) takes nothing from the host."""
    host: list[str] = []
    for bind in binds if isinstance(binds, list) else [binds]:
        if not isinstance(bind, str):
            host.append(_show(bind))
        elif ":" in bind and "/" in bind.split(":", 1)[0]:
            host.append(bind.split(":", 1)[0])
    return host


def _mount_asked(mount: Any) -> str | None:
    """What a ``Mounts`` entry takes from the host (None: a plain volume or a tmpfs): a
    bind, or a volume with a driver other than ``local`` or with driver options (the
    local driver's ``o=bind,device=/etc`` is a bind mount of ``/etc``)."""
    if not isinstance(mount, dict):
        return _show(mount)
    kind = mount.get("Type")
    if kind == "tmpfs":
        return None
    if kind == "volume":
        options = mount.get("VolumeOptions") or {}
        driver = (options.get("DriverConfig") if isinstance(options, dict) else None) or {}
        if not isinstance(driver, dict):
            return f"volume {_show(mount.get('Source'))} driver {_show(driver)}"
        if str(driver.get("Name") or "local") == "local" and not driver.get("Options"):
            return None
        return (
            f"volume {_show(mount.get('Source'))} driver {_show(driver.get('Name') or 'local')}"
            f" options {_show(driver.get('Options') or {})}"
        )
    return f"{_show(kind)} {_show(mount.get('Source'))}"


def _asked(field: str, value: Any) -> tuple[str, str] | None:
    """(the ``--allow`` word, what exactly) for one recorded ``HostConfig`` field that is
    neither at its default nor harmless; None when it is one of those."""
    check = HARMLESS_HOST.get(field)
    if _left_out(field, value) or (check is not None and check(value)):
        return None
    word = _FIELD_CATEGORY.get(field, field)
    if field == "Privileged":
        return word, "Privileged: true"
    if field == "Binds":
        host = _host_binds(value)
        return (word, ", ".join(host)) if host else None
    if field == "Mounts":
        asked = [m for m in map(_mount_asked, value if isinstance(value, list) else [value]) if m]
        return (word, ", ".join(asked)) if asked else None
    if field in ("CapAdd", "SecurityOpt") and isinstance(value, list):
        return word, ", ".join(map(_show, value))
    if field == "Devices" and isinstance(value, list):
        paths = [d.get("PathOnHost") if isinstance(d, dict) else d for d in value]
        return word, ", ".join(map(_show, paths))
    if field in _NAMESPACE_MODES:
        return word, f"{field}={_show(value)}"
    return word, f"{field}: {_show(value)}"


def asked(host_config: dict[str, Any]) -> dict[str, str]:
    """Every ``--allow`` word a recorded ``HostConfig`` needs, with what it asks (fields
    of one word joined by ``; ``)."""
    words: dict[str, list[str]] = {}
    for field, value in host_config.items():
        found = _asked(str(field), value)
        if found is not None:
            words.setdefault(found[0], []).append(found[1])
    return {word: "; ".join(what) for word, what in words.items()}


def rebuild(record: dict[str, Any], allow: frozenset[str], name: str) -> dict[str, Any]:
    """The ``POST /containers/create`` body for the side-file ``record``: ``Config``
    fields of :data:`HARMLESS_CONFIG`, and ``HostConfig`` fields that are harmless or
    whose word is in ``allow`` (fields at their default left out).

    Raises:
        IntegrityError: ``config`` or ``host_config`` is not an object.
        UsageError: a field needs a word that ``allow`` lacks: the message lists each
            (``privileged (Privileged: true); MaskedPaths (MaskedPaths: [])``) and the
            ``--allow`` flags that would let it through.
    """
    config = record.get("config") or {}
    host_config = record.get("host_config") or {}
    if not isinstance(config, dict) or not isinstance(host_config, dict):
        raise IntegrityError("the docker side-file's config or host_config is not an object")
    needed = asked(host_config)
    for field, value in config.items():
        if str(field) not in HARMLESS_CONFIG and not _is_default(value):
            needed[str(field)] = f"Config.{field}: {_show(value)}"
    refused = {word: why for word, why in needed.items() if word not in allow}
    if refused:
        raise UsageError(
            f"the checkpoint would re-create container {escape(name)} with "
            + "; ".join(f"{word} ({escape(why)})" for word, why in sorted(refused.items()))
            + ": pass "
            + " ".join(f"--allow {word}" for word in sorted(refused))
            + " if you trust it, or create the container yourself and restore into it"
        )
    body = {str(k): v for k, v in config.items() if not _is_default(v)}
    body["HostConfig"] = {
        str(k): v for k, v in host_config.items() if not _left_out(str(k), v)
    }
    return body


def allow_word(text: str) -> str:
    """``text`` when it is an ``--allow`` word (a category of :data:`CATEGORIES` or a
    field name such as ``MaskedPaths``); ValueError otherwise (argparse: exit 2)."""
    if text in CATEGORIES or FIELD_WORD.fullmatch(text):
        return text
    raise ValueError(f"not an --allow word: {text!r}")
