"""The CRIU engine: unit tests, then real dumps and restores of real processes (root)."""

from __future__ import annotations

import os
import struct
import sys
from pathlib import Path

import pytest

from cryostash import engines
from cryostash.engines import engine_names, get_engine
from cryostash.engines.base import Engine
from cryostash.engines.criu import SIDECAR, CriuEngine, failure_message
from cryostash.engines.criu_binary import is_recent, parse_version, version_tuple
from cryostash.engines.criu_images import (
    IMG_SERVICE_MAGIC,
    STATS_MAGIC,
    read_dump_stats,
)
from cryostash.engines.criu_pids import validate_pid
from cryostash.errors import EngineError, UsageError
from cryostash.types import (
    Availability,
    DumpOptions,
    DumpStats,
    RestoreOptions,
    RestoreResult,
)
from tests.support.processes import (
    COUNTER_PROG,
    ProcessTracker,
    free_port,
    kill_pid,
    pid_exists,
    read_counter,
    start_detached,
    tcp_request,
    wait_pid_gone,
    wait_serving,
    wait_until,
)

# --- version parsing, logs, images, registry: no CRIU needed ---------------------------


@pytest.mark.parametrize(
    ("output", "expected"),
    [
        ("Version: 4.2\n", "4.2"),
        ("Version: 4.2.1\nGitID: v4.2.1-3-gabc\n", "4.2.1"),
        ("Version: 3.17.1\n", "3.17.1"),
        ("criu: unrecognized option\n", None),
        ("", None),
    ],
)
def test_parse_version(output: str, expected: str | None) -> None:
    assert parse_version(output) == expected


def test_version_comparison() -> None:
    assert version_tuple("4.2.1") == (4, 2, 1)
    assert version_tuple("4.2.1-1") == (4, 2, 1)
    assert version_tuple("1:4.10-2") == (4, 10)
    assert is_recent("4.2") and is_recent("4.2.1") and is_recent("4.10") and is_recent("5.0")
    assert not is_recent("4.1.1") and not is_recent("3.17.1") and not is_recent(None)
    assert not is_recent("garbage")


def test_failure_message_has_cause_and_tail_without_rlimit_noise(tmp_path: Path) -> None:
    log = tmp_path / "dump.log"
    lines = [f"(00.0{i:02d}) filler line {i}" for i in range(30)]
    lines.insert(2, "(00.001) Error (criu/util.c:1534): rlimit: Can't setup RLIMIT_NOFILE for self")
    lines.insert(5, "(00.002) Error (criu/file-lock.c:110): Some file locks are hold")
    lines.append("(00.099) Error (criu/cr-dump.c:1975): Dumping FAILED.")
    log.write_text("\n".join(lines))
    message = failure_message("dump", 1, log, "")
    assert message.startswith("criu dump failed (exit 1): Some file locks are hold\n")
    assert "filler line 29" in message and "Dumping FAILED." in message
    assert "file-lock.c:110" in message  # an earlier error line is kept though not in the tail
    assert "RLIMIT_NOFILE" not in message
    assert "filler line 3\n" not in message


def test_failure_message_without_log_uses_criu_output(tmp_path: Path) -> None:
    message = failure_message(
        "dump", 1, tmp_path / "absent.log", "criu: unrecognized option '--bogus'\n", "Usage:\n"
    )
    assert message.startswith("criu dump failed (exit 1): criu: unrecognized option '--bogus'")


def test_dump_stats_are_decoded(tmp_path: Path) -> None:
    # What CRIU 4.2.1 wrote for a small process: freezing 203 us, frozen 16873 us, ...
    entry = bytes.fromhex("0a2308cb0110e9830118fd1e20c410289506300038df05")
    entry += bytes.fromhex("4000480050085808600068007000")
    header = struct.pack("<III", IMG_SERVICE_MAGIC, STATS_MAGIC, len(entry))
    (tmp_path / "stats-dump").write_bytes(header + entry)
    stats = read_dump_stats(tmp_path)
    assert stats["freezing_time_us"] == 203
    assert stats["frozen_time_us"] == 16873
    assert stats["pages_written"] == 735
    assert read_dump_stats(tmp_path / "nowhere") == {}


def test_registry() -> None:
    assert "criu" in engine_names()
    engine = get_engine("criu", criu_path="/nonexistent/criu")
    assert isinstance(engine, CriuEngine) and isinstance(engine, Engine)
    assert engine.name == "criu"
    with pytest.raises(UsageError, match=r"unknown engine 'nope' \(available: .*criu"):
        get_engine("nope")


class _FakeEntryPoint:
    def __init__(self, name: str, target: object) -> None:
        self.name, self._target = name, target

    def load(self) -> object:
        if isinstance(self._target, Exception):
            raise self._target
        return self._target


class _PluginEngine:
    name = "plugin"

    def available(self) -> Availability:
        return Availability(ok=True)

    def dump(self, locator: str, image_dir: Path, options: DumpOptions) -> DumpStats:
        return DumpStats(duration_s=0.0)

    def restore(self, image_dir: Path, options: RestoreOptions) -> RestoreResult:
        return RestoreResult(pid=0, duration_s=0.0)


def test_registry_loads_plugins_and_survives_stale_metadata(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    fake = {
        "plugin": _FakeEntryPoint("plugin", _PluginEngine),
        "criu": _FakeEntryPoint("criu", ImportError("No module named 'old_name'")),
    }
    monkeypatch.setattr(engines, "_entry_points", lambda: fake)
    assert engine_names() == ["criu", "docker", "plugin", "podman", "runc"]
    assert isinstance(get_engine("plugin", criu_path="/x"), _PluginEngine)  # no criu_path arg
    assert isinstance(get_engine("criu"), CriuEngine)  # stale entry point: the built-in
    with pytest.raises(UsageError, match=r"available: criu, docker, plugin, podman, runc"):
        get_engine("nope")


def test_unavailable_when_binary_missing() -> None:
    availability = CriuEngine("/nonexistent/criu").available()
    assert not availability.ok
    assert availability.reason


def test_old_criu_is_refused_with_socket_reason(tmp_path: Path) -> None:
    fake = tmp_path / "criu"
    fake.write_text("#!/bin/sh\necho 'Version: 4.1.1'\n")
    fake.chmod(0o755)
    engine = CriuEngine(str(fake))
    availability = engine.available()
    assert not availability.ok and availability.version == "4.1.1"
    assert availability.reason is not None and "TCP or UDP" in availability.reason
    with pytest.raises(EngineError, match=r"older than 4\.2"):
        engine.restore(tmp_path, RestoreOptions())


def _absent_pid() -> int:
    pid_max = int(Path("/proc/sys/kernel/pid_max").read_text())
    return next(p for p in range(pid_max - 1, 1, -1) if not pid_exists(p))


@pytest.mark.parametrize(
    ("locator", "message"),
    [
        ("abc", "invalid PID 'abc'"),
        ("", "invalid PID"),
        ("-5", "invalid PID"),
        ("0", "refusing to checkpoint PID 0"),
        ("1", "refusing to checkpoint PID 1"),
        ("this-process", "this cryostash process or one of its ancestors"),
        ("its-parent", "this cryostash process or one of its ancestors"),
        ("2", "kernel thread"),
    ],
)
def test_dump_refuses_bad_pids(tmp_path: Path, locator: str, message: str) -> None:
    # Resolved here, not in the test ids: every pytest-xdist worker must collect the same.
    locator = {"this-process": str(os.getpid()), "its-parent": str(os.getppid())}.get(
        locator, locator
    )
    with pytest.raises(UsageError, match=message):
        CriuEngine("/nonexistent/criu").dump(locator, tmp_path, DumpOptions())


def test_dump_of_missing_pid_is_a_usage_error(tmp_path: Path) -> None:
    pid = _absent_pid()
    with pytest.raises(UsageError, match=f"no process with PID {pid}"):
        validate_pid(str(pid))
    with pytest.raises(UsageError, match=f"no process with PID {pid}"):
        CriuEngine("/nonexistent/criu").dump(str(pid), tmp_path, DumpOptions())


# --- real CRIU (root) -----------------------------------------------------------------


@pytest.fixture
def engine(criu_path: str) -> CriuEngine:
    return CriuEngine(criu_path)


def _images(tmp_path: Path, name: str = "images") -> Path:
    path = tmp_path / name
    path.mkdir(mode=0o700)
    return path


@pytest.mark.criu
def test_available_reports_recent_version_and_features(engine: CriuEngine) -> None:
    availability = engine.available()
    assert availability.ok, availability.reason
    assert availability.version is not None and is_recent(availability.version)
    assert set(availability.features) >= {"mem_dirty_track", "uffd-noncoop"}
    assert all(isinstance(v, bool) for v in availability.features.values())
    assert engine.available() is availability  # cached per instance


@pytest.mark.criu
def test_counter_continues_after_dump_and_restore(
    engine: CriuEngine, procs: ProcessTracker, tmp_path: Path
) -> None:
    proc = procs.counter(tmp_path / "work")
    counter = proc.counter_path
    assert counter is not None
    wait_until(lambda: read_counter(counter) >= 5, 10, "the counter to reach 5")
    images = _images(tmp_path)

    stats = engine.dump(str(proc.pid), images, DumpOptions())

    assert stats.root_pid == proc.pid
    assert stats.engine_version and is_recent(stats.engine_version)
    assert stats.duration_s > 0
    assert stats.details["frozen_time_us"] > 0 and stats.details["pages_written"] > 0
    assert not pid_exists(proc.pid) or Path(f"/proc/{proc.pid}/stat").read_text().split()[2] == "Z"
    wait_pid_gone(proc.pid)  # it is no child of ours: init reaps it
    at_dump = read_counter(counter)
    assert at_dump >= 5
    assert (images / "pages-1.img").exists() and (images / SIDECAR).exists()

    result = engine.restore(images, RestoreOptions(root_pid=stats.root_pid))

    procs.track(result.pid)
    assert result.pid == proc.pid
    assert result.duration_s > 0
    assert result.details.get("pages_restored", 0) > 0
    ppid = int(Path(f"/proc/{result.pid}/stat").read_text().rsplit(")", 1)[1].split()[1])
    assert ppid != os.getpid()  # detached: reparented to init, never our zombie
    assert read_counter(counter) >= at_dump  # never restarts from 0
    wait_until(lambda: read_counter(counter) >= at_dump + 3, 10, "the restored counter to count")


@pytest.mark.criu
def test_leave_running_then_restore_once_the_pid_is_free(
    engine: CriuEngine, procs: ProcessTracker, tmp_path: Path
) -> None:
    proc = procs.counter(tmp_path / "work")
    counter = proc.counter_path
    assert counter is not None
    wait_until(lambda: read_counter(counter) >= 3, 10, "the counter to reach 3")
    images = _images(tmp_path)

    stats = engine.dump(str(proc.pid), images, DumpOptions(leave_running=True))

    at_dump = read_counter(counter)
    assert stats.details["criu_options"] == ["--leave-running"]
    wait_until(lambda: read_counter(counter) > at_dump + 2, 10, "the original to keep counting")
    assert pid_exists(proc.pid)
    # While the original holds the PID, restore must refuse clearly (the images name it).
    with pytest.raises(EngineError, match=f"PID {proc.pid} is still in use"):
        engine.restore(images, RestoreOptions(wait_for_pid_s=0.2))

    kill_pid(proc.pid)
    result = engine.restore(images, RestoreOptions(root_pid=proc.pid))

    procs.track(result.pid)
    assert result.pid == proc.pid
    assert read_counter(counter) >= at_dump
    wait_until(lambda: read_counter(counter) > at_dump + 2, 10, "the restored counter to count")


@pytest.mark.criu
def test_tcp_server_keeps_its_memory_across_dump_and_restore(
    engine: CriuEngine, procs: ProcessTracker, tmp_path: Path
) -> None:
    port = free_port()
    proc = procs.tcp_server(tmp_path / "work", port)
    assert tcp_request(port, "SET greeting hello-from-before") == "OK"
    assert tcp_request(port, "SET answer 42") == "OK"
    served_before = tcp_request(port, "STATS")
    assert served_before == "served=3 keys=2"  # PING, SET, SET
    images = _images(tmp_path)

    stats = engine.dump(str(proc.pid), images, DumpOptions())

    wait_pid_gone(proc.pid)
    with pytest.raises(OSError):
        tcp_request(port, "PING", timeout=1)
    result = engine.restore(images, RestoreOptions(root_pid=stats.root_pid))
    procs.track(result.pid)
    wait_serving(port)  # served=5 after this PING
    assert tcp_request(port, "GET greeting") == "hello-from-before"
    assert tcp_request(port, "GET answer") == "42"
    assert tcp_request(port, "STATS") == "served=7 keys=2"


@pytest.mark.criu
def test_dump_failure_carries_criu_log_tail_and_options_are_mirrored(
    engine: CriuEngine, procs: ProcessTracker, tmp_path: Path
) -> None:
    work = tmp_path / "work"
    counter = work / "counter"
    proc = start_detached(
        [sys.executable, str(COUNTER_PROG), str(counter), "0.05", "--flock"], work, "counter"
    )
    procs.track(proc.pid)
    read_counter(counter)
    images = _images(tmp_path)

    with pytest.raises(EngineError) as failed:
        engine.dump(str(proc.pid), images, DumpOptions())

    message = str(failed.value)
    assert message.startswith("criu dump failed (exit 1): Some file locks are hold")
    assert "--- last lines of criu dump.log ---" in message
    assert "Dumping FAILED" in message
    assert "RLIMIT_NOFILE" not in message
    assert pid_exists(proc.pid)  # a failed dump leaves the process running
    at_failure = read_counter(counter)
    wait_until(lambda: read_counter(counter) > at_failure, 10, "the counter to go on")

    retry = _images(tmp_path, "retry")
    stats = engine.dump(str(proc.pid), retry, DumpOptions(extra_args=("--file-locks",)))
    wait_pid_gone(proc.pid)
    result = engine.restore(retry, RestoreOptions(root_pid=stats.root_pid))
    procs.track(result.pid)
    assert "--file-locks" in result.details["criu_options"]  # mirrored from the dump
    at_dump = read_counter(counter)
    wait_until(lambda: read_counter(counter) > at_dump + 2, 10, "the restored counter to count")


@pytest.mark.criu
def test_bogus_extra_argument_fails_with_criu_message(
    engine: CriuEngine, procs: ProcessTracker, tmp_path: Path
) -> None:
    proc = procs.counter(tmp_path / "work")
    with pytest.raises(EngineError, match="unrecognized option '--no-such-criu-option'"):
        engine.dump(
            str(proc.pid), _images(tmp_path), DumpOptions(extra_args=("--no-such-criu-option",))
        )
    assert pid_exists(proc.pid)


@pytest.mark.criu
def test_restore_failure_carries_criu_log_tail(engine: CriuEngine, tmp_path: Path) -> None:
    images = _images(tmp_path)
    with pytest.raises(EngineError) as failed:
        engine.restore(images, RestoreOptions())
    message = str(failed.value)
    assert message.startswith("criu restore failed (exit 1): ")
    assert "--- last lines of criu restore.log ---" in message
