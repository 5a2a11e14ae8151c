"""Engines for the engine conformance suite (``tests/test_engine_conformance.py``), the way
``tests/support/stores.py`` provides backends for the backend suite.

Every test that takes the ``engine_rig`` fixture runs once per name in :data:`ENGINES`;
the fixture gives an :class:`EngineRig`: two simulated hosts (``host-a``, ``host-b``:
own scratch, cache and host name, one store and catalog) set up for that engine, and the
engine's way to start what it checkpoints (a counter that keeps its count in memory only),
to see it run, to stop it, and to restore it here and elsewhere. A rig stops every
process and container it started when the test ends (``close``).

- ``criu``: a detached counter process (``tests/support/counter_prog.py``), by PID.
- ``runc``, ``podman``, ``docker``: a busybox counter container
  (``tests/support/container_rigs.py``), on the session's runtimes.
- ``toy``: a third-party engine installed as a real package (``tests/support/toy_engine``,
  built by pip into a private folder once per session, given to the CLI on
  ``PYTHONPATH``): its "process" is a state file that does not count.

To add an engine: a subclass of :class:`EngineRig`, its name in :data:`ENGINES` and a
branch in :func:`make_rig`.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import uuid
from abc import ABC, abstractmethod
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from tests.support.cli import Host
from tests.support.containers import assert_goes_on, read_count, unique
from tests.support.processes import (
    ProcessTracker,
    kill_pid,
    peek_counter,
    pid_exists,
    wait_pid_gone,
    wait_until,
)

#: The engines every conformance test runs against.
ENGINES = ["criu", "runc", "podman", "docker", "toy"]
TOY_PACKAGE = Path(__file__).resolve().parent / "toy_engine"


@dataclass
class Workload:
    """Something a rig started for its engine to checkpoint.

    Attributes:
        target: the TARGET of ``cryostash create`` (a container's name, or a name for a
            process).
        locator: further ``create`` arguments that name it to the engine (``--pid N``).
        counter: the file its count can be read from, outside of it.
        floor: a count read before any checkpoint of it.
        pid: its PID, when the rig knows it.
        extra: engine-specific details (a runc bundle, a data folder...).
    """

    target: str
    locator: list[str]
    counter: Path
    floor: int = 0
    pid: int | None = None
    extra: dict[str, Any] = field(default_factory=dict)


class EngineRig(ABC):
    """One engine under test: two simulated hosts and the engine's own ways.

    Attributes:
        name: the engine's name (``--engine NAME``).
        image_files: files every image of this engine holds (``inspect`` lists them).
        missing_message: the reason ``create`` gives for a target that does not exist
            (after ``Cannot checkpoint container TARGET: ``).
        host_a, host_b: the two hosts.
    """

    name: str
    image_files: frozenset[str]
    missing_message: str

    def __init__(self, home: Path, work: Path, env_extra: dict[str, str]) -> None:
        self.work = work
        self.host_a = Host(home, "host-a", env_extra)
        self.host_b = Host(home, "host-b", env_extra)

    def create_args(self, w: Workload) -> list[str]:
        """``create`` arguments after TARGET NAME that make a checkpoint of ``w``."""
        return ["--engine", self.name, *w.locator]

    def missing_locator(self) -> list[str]:
        """``create`` arguments after TARGET NAME naming something that does not exist."""
        return ["--engine", self.name]

    @abstractmethod
    def start(self, hint: str, read_only: bool = False) -> Workload:
        """Start a counter (with a read-only root file system if ``read_only``) and wait
        until it counted a little; its ``floor`` is set."""

    @abstractmethod
    def running(self, w: Workload) -> bool:
        """True while ``w`` runs."""

    @abstractmethod
    def assert_stopped_by_dump(self, w: Workload) -> None:
        """A dump without ``--leave-running`` stopped ``w`` (the engine's way)."""

    def restore_here_args(self, w: Workload, cp: str) -> list[str]:
        """Clear the way for restoring ``w`` under its own name on host A (and check
        what the engine refuses first); the ``restore`` arguments after TARGET NAME."""
        return []

    @abstractmethod
    def restored(self, w: Workload, result: dict[str, Any]) -> Workload:
        """``w`` as ``restore --json`` said it was restored; asserts it runs."""

    @abstractmethod
    def stop(self, w: Workload) -> None:
        """Stop (and remove) ``w``, waiting until it is gone."""

    @abstractmethod
    def restore_elsewhere(self, w: Workload, cp: str) -> Workload:
        """Restore ``cp`` of ``w`` on host B (under another name where the engine can;
        ``w`` is stopped); return the restored one, asserted running."""

    @abstractmethod
    def restore_after_leave_running(self, w: Workload, cp: str) -> Workload:
        """``cp`` was made of ``w`` with ``--leave-running`` and ``w`` runs on: restore
        it the engine's way (beside ``w``, or in its place); return the restored one."""

    @abstractmethod
    def start_undumpable(self, hint: str) -> tuple[Workload, list[str], list[str]]:
        """A running counter the engine fails to dump: (it, further ``create``
        arguments, fragments the error names)."""

    def after_failed_dump(self, w: Workload) -> None:
        """Engine-specific checks after ``w`` failed to dump (and still runs)."""
        return

    def count(self, w: Workload) -> int | None:
        """The count of ``w`` now, or None while unreadable."""
        return read_count(w.counter)

    def assert_goes_on(self, w: Workload, floor: int) -> list[int]:
        """``w`` counts on from at least ``floor`` (it did not restart)."""
        return assert_goes_on(w.counter, floor, read=lambda _: self.count(w))

    def assert_counting(self, w: Workload) -> None:
        """``w`` is counting now."""
        self.wait_count(w, (self.count(w) or 0) + 2)

    def wait_count(self, w: Workload, at_least: int) -> int:
        """Wait until ``w`` counted to ``at_least``; return the count seen."""

        def reached() -> int | None:
            value = self.count(w)
            return value if value is not None and value >= at_least else None

        return wait_until(reached, 20, f"the counter in {w.counter} to reach {at_least}")

    def check_export(self, w: Workload, cp: str, out: Path) -> None:
        """``export`` of a checkpoint of this engine (refused, unless it is podman's)."""
        done = self.host_a.cli("export", w.target, cp, "-o", str(out), check=False)
        assert done.returncode == 2, done.stderr
        assert f"cannot export a {self.name} checkpoint as a container archive" in done.stderr
        assert not out.exists() and not out.with_name(out.name + ".partial").exists()

    def assert_clean(self) -> None:
        """Nothing of this engine's own is left behind by cryostash."""
        return

    @abstractmethod
    def close(self) -> None:
        """Stop everything the rig started."""


class CriuRig(EngineRig):
    """``criu``: a detached counter process, checkpointed by PID; a restore takes the
    PID back, so it needs the PID free (nothing can run beside it)."""

    name = "criu"
    image_files = frozenset({"inventory.img", "cryostash-criu.json"})
    missing_message = "no process with PID 4194000"

    def __init__(self, home: Path, work: Path, criu: str, procs: ProcessTracker) -> None:
        super().__init__(home, work, {"CRYOSTASH_CRIU": criu})
        self.procs = procs

    def missing_locator(self) -> list[str]:
        return ["--engine", "criu", "--pid", "4194000"]  # above the default pid_max

    def start(self, hint: str, read_only: bool = False) -> Workload:
        assert not read_only, "a process has no root file system of its own"
        proc = self.procs.counter(self.work / unique(hint))
        assert proc.counter_path is not None
        w = Workload(unique(hint), ["--pid", str(proc.pid)], proc.counter_path, pid=proc.pid)
        w.floor = self.wait_count(w, 3)
        return w

    def count(self, w: Workload) -> int | None:
        return peek_counter(w.counter)

    def running(self, w: Workload) -> bool:
        return w.pid is not None and pid_exists(w.pid)

    def assert_stopped_by_dump(self, w: Workload) -> None:
        assert w.pid is not None
        wait_pid_gone(w.pid)

    def restored(self, w: Workload, result: dict[str, Any]) -> Workload:
        pid = self.procs.track(int(result["pid"]))
        assert pid == w.pid and pid_exists(pid), "CRIU restores the recorded PID"
        return Workload(w.target, w.locator, w.counter, w.floor, pid)

    def stop(self, w: Workload) -> None:
        assert w.pid is not None
        kill_pid(w.pid)

    def restore_elsewhere(self, w: Workload, cp: str) -> Workload:
        return self.restored(w, self.host_b.json("restore", w.target, cp))

    def restore_after_leave_running(self, w: Workload, cp: str) -> Workload:
        self.stop(w)  # the images name its PID: it must be free
        return self.restored(w, self.host_a.json("restore", w.target, cp))

    def start_undumpable(self, hint: str) -> tuple[Workload, list[str], list[str]]:
        return self.start(hint), ["--criu-opt", "no-such-criu-option"], ["no-such-criu-option"]

    def after_failed_dump(self, w: Workload) -> None:
        # The name is free again.
        self.host_a.cli("create", w.target, "cp", *self.create_args(w), "--leave-running")

    def close(self) -> None:
        self.procs.kill_all()


class ToyRig(EngineRig):
    """``toy``: the third-party engine package; the "process" is ``$TOY_ROOT/NAME.txt``
    holding ``state N`` (N its constant "count"); restore writes it back."""

    name = "toy"
    image_files = frozenset({"state.img", "toy.json"})
    missing_message = "no toy process 'no-such-ctr'"

    def __init__(self, home: Path, work: Path, plugin: Path) -> None:
        self.root = work / "toy"
        self.root.mkdir(parents=True)
        python_path = os.pathsep.join(filter(None, [str(plugin), os.environ.get("PYTHONPATH")]))
        super().__init__(home, work, {"PYTHONPATH": python_path, "TOY_ROOT": str(self.root)})

    def _file(self, name: str) -> Path:
        return self.root / f"{name}.txt"

    def start(self, hint: str, read_only: bool = False) -> Workload:
        name, value = unique(hint), uuid.uuid4().int % 1000 + 3
        self._file(name).write_text(f"state {value}")
        return Workload(name, [], self._file(name), floor=value)

    def count(self, w: Workload) -> int | None:
        try:
            return int(w.counter.read_text().split()[1])
        except (OSError, IndexError, ValueError):
            return None

    def assert_goes_on(self, w: Workload, floor: int) -> list[int]:
        assert self.count(w) == floor, "the toy state came back as it was dumped"
        return [floor]

    def assert_counting(self, w: Workload) -> None:
        assert self.count(w) == w.floor  # its state is untouched

    def running(self, w: Workload) -> bool:
        return w.counter.exists()

    def assert_stopped_by_dump(self, w: Workload) -> None:
        assert not w.counter.exists()

    def restored(self, w: Workload, result: dict[str, Any]) -> Workload:
        name = str(result["container"])
        assert result["pid"] == 4242 and self._file(name).exists()
        return Workload(name, [], self._file(name), w.floor)

    def stop(self, w: Workload) -> None:
        w.counter.unlink()

    def restore_elsewhere(self, w: Workload, cp: str) -> Workload:
        other = unique("toy-b")
        return self.restored(w, self.host_b.json("restore", w.target, cp, "--as", other))

    def restore_after_leave_running(self, w: Workload, cp: str) -> Workload:
        self.stop(w)
        return self.restored(w, self.host_a.json("restore", w.target, cp))

    def start_undumpable(self, hint: str) -> tuple[Workload, list[str], list[str]]:
        name = unique(hint)
        self._file(name).write_text("unfreezable 5")
        return Workload(name, [], self._file(name), floor=5), [], ["toy dump failed"]

    def close(self) -> None:
        shutil.rmtree(self.root, ignore_errors=True)


@pytest.fixture(scope="session", name="toy_plugin")
def toy_plugin_fixture(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The toy engine package (``tests/support/toy_engine``), built and installed by pip
    into a private folder (the shared virtual environment is never modified)."""
    base = tmp_path_factory.mktemp("toy-engine")
    src = base / "src"
    shutil.copytree(TOY_PACKAGE, src, ignore=shutil.ignore_patterns("__pycache__"))
    target = base / "site"
    done = subprocess.run(
        [sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--target", str(target),
         str(src)],
        capture_output=True, text=True, timeout=300, check=False,
    )
    assert done.returncode == 0, done.stderr
    assert list(target.glob("cryostash_toy_engine-0.1.dist-info/entry_points.txt"))
    return target


def make_rig(name: str, request: pytest.FixtureRequest, tmp_path: Path) -> EngineRig:
    """The rig of engine ``name``; its runtime fixtures are asked for only now (no
    dockerd is started for a run that selects no docker test)."""
    home, work = tmp_path / "cs", tmp_path / "work"
    work.mkdir()
    if name == "criu":
        return CriuRig(home, work, request.getfixturevalue("criu_path"),
                       request.getfixturevalue("procs"))
    if name == "toy":
        return ToyRig(home, work, request.getfixturevalue("toy_plugin"))
    from tests.support import container_rigs

    criu = request.getfixturevalue("criu_path")
    if name == "runc":
        return container_rigs.RuncRig(home, work, criu, request.getfixturevalue("runc_rootfs"))
    if name == "podman":
        return container_rigs.PodmanRig(home, work, criu, request.getfixturevalue("podman_host"))
    if name == "docker":
        return container_rigs.DockerRig(home, work, criu, request.getfixturevalue("dockerd"))
    raise AssertionError(f"no rig for engine {name!r}")


@pytest.fixture(name="engine_rig", params=ENGINES)
def engine_rig_fixture(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[EngineRig]:
    """``engine_rig`` (registered in ``tests/conftest.py``): the test once per engine."""
    rig = make_rig(request.param, request, tmp_path)
    try:
        yield rig
    finally:
        rig.close()

