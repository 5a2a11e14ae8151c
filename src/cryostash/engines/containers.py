"""What the container engines (``runc``, ``podman``, ``docker``) share.

- Running a runtime's command: stdin is ``/dev/null`` and stdout/stderr go to
  anonymous temporary files, never pipes. A restored container may inherit the
  runtime's standard descriptors (runc hands them to CRIU with ``--inherit-fd``
  when the dumped container had pipes): with pipes the caller would wait forever
  for an end of file that the container holds.
- Pointing a runtime at cryostash's CRIU: runc takes ``--criu PATH``; podman (and
  the runc it starts) look ``criu`` up on ``PATH``, so :func:`criu_on_path` puts a
  folder holding a ``criu`` that is the chosen binary first on ``PATH``.
- :class:`RuntimeEngine`: the version and availability of an engine that drives a
  runtime's command with cryostash's CRIU (``runc``, ``podman``), written once.
- The sidecar: a small JSON file an engine writes into the image directory (what
  restore needs: container id, bundle, dump options). It travels in the store with
  the rest of the checkpoint.

Nothing here touches the store or the catalog.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import subprocess
import tempfile
import threading
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cryostash.engines.criu import CriuEngine, failure_message
from cryostash.errors import EngineError, UsageError
from cryostash.redact import child_env
from cryostash.types import Availability

#: Dump options that CRIU needs again at restore; the container engines record them
#: in their sidecar and pass them again (runc and podman use the same flag names).
MIRRORED_OPTIONS = frozenset({"--tcp-established", "--file-locks", "--ext-unix-sk", "--shell-job"})
#: Flags the podman engine alone understands (refused by the others with a UsageError).
PODMAN_ONLY_OPTIONS = frozenset({"--ignore-rootfs", "--ignore-volumes"})
#: How long a dump or restore may take before a runtime command is abandoned (seconds).
LONG_TIMEOUT_S = 3600.0
#: How long a quick query (version, state, inspect) may take (seconds).
QUICK_TIMEOUT_S = 60.0


@dataclass(frozen=True)
class Completed:
    """A finished runtime command: exit status and its decoded output."""

    code: int
    out: str
    err: str

    def first_error(self) -> str:
        """The most telling line of the output (stderr first), or the exit status."""
        for text in (self.err, self.out):
            lines = [line.strip() for line in text.splitlines() if line.strip()]
            if lines:
                return lines[-1] if len(lines) == 1 else " / ".join(lines[-3:])
        return f"exit status {self.code}"


def run_tool(
    cmd: Sequence[str],
    *,
    env: Mapping[str, str] | None = None,
    timeout: float | None = QUICK_TIMEOUT_S,
) -> Completed:
    """Run ``cmd`` with stdin on /dev/null and stdout/stderr in anonymous files.

    Raises:
        EngineError: the command cannot be started, or it outlives ``timeout``.
    """
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        try:
            proc = subprocess.run(
                list(cmd),
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=err,
                env=child_env(env),
                timeout=timeout,
                check=False,
            )
        except OSError as exc:
            raise EngineError(f"cannot run {cmd[0]}: {exc}") from exc
        except subprocess.TimeoutExpired as exc:
            raise EngineError(
                f"{' '.join(cmd[:3])} ... did not finish within {timeout:g} s"
            ) from exc
        out.seek(0)
        err.seek(0)
        return Completed(
            proc.returncode,
            out.read().decode(errors="replace"),
            err.read().decode(errors="replace"),
        )


def find_binary(env_var: str, name: str) -> str | None:
    """The runtime binary: ``$ENV_VAR`` when set (a path or a name), else ``name`` on PATH."""
    explicit = os.environ.get(env_var)
    if explicit:
        return explicit if os.sep in explicit else shutil.which(explicit)
    return shutil.which(name)


def root_reason(tool: str) -> str | None:
    """Why ``tool`` cannot checkpoint here when not root (None for root)."""
    if os.geteuid() == 0:
        return None
    return f"{tool} checkpoint/restore needs root (CRIU cannot checkpoint rootless containers)"


_SHARED: dict[str, CriuEngine] = {}
_SHARED_LOCK = threading.Lock()
_AVAILABLE_LOCK = threading.Lock()


def shared_criu(criu_path: str | None) -> CriuEngine:
    """One :class:`CriuEngine` per CRIU choice in this process, so that the engines
    built on CRIU run ``criu check`` (about 0.2 s) once between them."""
    key = criu_path or os.environ.get("CRYOSTASH_CRIU") or ""
    with _SHARED_LOCK:
        if key not in _SHARED:
            _SHARED[key] = CriuEngine(key or None)
        return _SHARED[key]


def usable_criu(criu: CriuEngine) -> tuple[str | None, Availability]:
    """(path of a usable CRIU or None, its availability), never raising.

    Serialised: concurrent callers sharing one engine (doctor checks engines in
    threads) wait for the first answer, which the engine caches.
    """
    with _AVAILABLE_LOCK:
        avail = criu.available()
    return (avail.path if avail.ok else None), avail


def require_criu(criu: CriuEngine, tool: str) -> str:
    """The path of a usable CRIU >= 4.2, or EngineError saying why there is none."""
    path, avail = usable_criu(criu)
    if path is None:
        raise EngineError(f"{tool} needs CRIU >= 4.2: {avail.reason}")
    return path


@contextlib.contextmanager
def criu_on_path(criu: str, base: Mapping[str, str] | None = None) -> Iterator[dict[str, str]]:
    """An environment whose ``PATH`` finds ``criu`` first (as ``criu``).

    When the binary is already called ``criu`` its folder goes first on ``PATH``;
    otherwise a temporary folder holding a ``criu`` symlink to it does (removed on exit).
    """
    env = dict(os.environ if base is None else base)
    path = env.get("PATH", os.defpath)
    if os.path.basename(criu) == "criu":
        env["PATH"] = os.pathsep.join([os.path.dirname(os.path.abspath(criu)), path])
        yield env
        return
    with tempfile.TemporaryDirectory(prefix="cryostash-criu-") as tmp:
        os.symlink(os.path.abspath(criu), os.path.join(tmp, "criu"))
        env["PATH"] = os.pathsep.join([tmp, path])
        yield env


def write_sidecar(image_dir: Path, filename: str, data: Mapping[str, Any]) -> None:
    """Write ``data`` as ``image_dir/filename`` (indented JSON, with ``format: 1``)."""
    payload = {"format": 1, **data}
    (image_dir / filename).write_text(json.dumps(payload, indent=2, sort_keys=True) + "\n")


def read_sidecar(image_dir: Path, filename: str, engine: str) -> dict[str, Any]:
    """Read the sidecar an engine wrote at dump time.

    Raises:
        EngineError: it is missing or not a JSON object (not a checkpoint of ``engine``).
    """
    try:
        data = json.loads((image_dir / filename).read_text())
    except (OSError, ValueError) as exc:
        raise EngineError(
            f"{filename} is missing or unreadable in the checkpoint ({exc}): was it made "
            f"by the {engine} engine?"
        ) from exc
    if not isinstance(data, dict):
        raise EngineError(f"{filename} in the checkpoint is not a JSON object")
    return data


def check_options(extra: Sequence[str], tool: str, allowed_extra: frozenset[str]) -> list[str]:
    """Check the extra arguments given to a container engine; return them as a list.

    Raises:
        UsageError: one of them is for another engine (e.g. ``--ignore-rootfs``
            outside podman).
    """
    bad = [a for a in extra if a.split("=", 1)[0] in PODMAN_ONLY_OPTIONS - allowed_extra]
    if bad:
        raise UsageError(f"{', '.join(bad)}: only the podman engine takes this, not {tool}")
    return list(extra)


def mirrored(recorded: Sequence[str], given: Sequence[str], names: frozenset[str]) -> list[str]:
    """Options recorded at dump that restore needs too and that were not given again."""
    return [o for o in recorded if o in names and o not in given]


#: How runc (via podman: ``log file: PATH``; via containerd: ``path= PATH``) names CRIU's log.
_LOG_FILE_RE = re.compile(r"(?:log file:|path=)\s*([^\s\"'\\]+?\.log)")


def named_log(text: str) -> Path | None:
    """The CRIU log that a runtime's error names, when it is an absolute path that still
    exists."""
    for match in _LOG_FILE_RE.finditer(text):
        path = Path(match.group(1))
        if path.is_absolute() and path.is_file():
            return path
    return None


def runtime_failure(head: str, text: str, code: int | None = None) -> str:
    """A runtime's failure, opening with ``head`` (``podman container checkpoint
    failed (exit 125)``): CRIU's first error and log tail when ``text`` names a CRIU log
    that is still there, else the runtime's own last lines."""
    log = named_log(text)
    if log is not None:
        return failure_message("", code or 1, log, text, head=head)
    lines = [line.strip() for line in text.replace("\\n", "\n").splitlines() if line.strip()]
    return f"{head}: " + " / ".join(lines[-3:] or ["no output"])


def version_line(text: str) -> str | None:
    """The version in a ``TOOL version X`` line (``runc version 1.1.5`` -> ``1.1.5``)."""
    for line in text.splitlines():
        words = line.split()
        if len(words) >= 3 and words[1] == "version":
            return words[2].rstrip(",")
    return None


class RuntimeEngine:
    """Base of the engines that run a runtime's command with cryostash's CRIU (``runc``,
    ``podman``): :meth:`version` and :meth:`available`.

    Args:
        binary: the runtime's binary, or None when it was not found.
        criu_path: the CRIU binary (see :func:`shared_criu`).
    """

    #: The engine's (and its runtime's) name.
    name: str
    #: How to get the runtime, shown when it is not found (``apt-get install runc; or
    #: $CRYOSTASH_RUNC``).
    install_hint: str

    def __init__(self, binary: str | None, criu_path: str | None) -> None:
        self._criu = shared_criu(criu_path)
        self._binary = binary
        self._version: str | None = None

    def version(self) -> str | None:
        """What ``RUNTIME --version`` says (``1.1.5+ds1``), or None when it does not run."""
        if self._version is None and self._binary is not None:
            done = run_tool([self._binary, "--version"])
            self._version = version_line(done.out) if done.code == 0 else None
        return self._version

    def available(self) -> Availability:
        """The runtime runs, we are root, CRIU >= 4.2 is usable, and :meth:`missing` says
        nothing."""
        if self._binary is None:
            return Availability(
                ok=False, reason=f"{self.name} not found on PATH ({self.install_hint})"
            )
        try:
            version = self.version()
        except EngineError as exc:
            return Availability(ok=False, path=self._binary, reason=str(exc))
        if version is None:
            return Availability(
                ok=False, path=self._binary, reason=f"{self._binary} --version failed"
            )
        criu, criu_avail = usable_criu(self._criu)
        reason = root_reason(self.name)
        if reason is None and criu is None:
            reason = f"needs CRIU >= 4.2: {criu_avail.reason}"
        if reason is None:
            reason = self.missing()
        return Availability(
            ok=reason is None,
            version=version,
            path=self._binary,
            reason=reason,
            features={"criu": criu is not None},
        )

    def missing(self) -> str | None:
        """What else the engine lacks here (checked last by :meth:`available`), or None."""
        return None
