"""Container engines without a runtime: registry, CLI usage rules, availability reasons,
DOCKER_HOST, the failure messages built from a runtime's output, doctor's listing."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from cryostash.engines import engine_names, get_engine
from cryostash.engines.base import Engine
from cryostash.engines.containers import check_options, named_log, runtime_failure
from cryostash.engines.criu import CriuEngine
from cryostash.engines.docker import DockerEngine
from cryostash.engines.docker_api import DEFAULT_SOCKET, socket_path
from cryostash.engines.podman import PodmanEngine
from cryostash.engines.runc import RuncEngine
from cryostash.errors import EngineError, UsageError
from cryostash.types import DumpOptions, RestoreOptions
from tests.support.cli import Host, assert_nothing_left
from tests.support.processes import ProcessTracker


def test_every_builtin_engine_is_registered() -> None:
    assert {"criu", "runc", "podman", "docker"} <= set(engine_names())
    for name in ("runc", "podman", "docker"):
        engine = get_engine(name, criu_path="/nonexistent/criu")
        assert isinstance(engine, Engine) and engine.name == name


@pytest.fixture
def host(tmp_path: Path) -> Host:
    return Host(tmp_path / "cs", "host-a", {"DOCKER_HOST": "unix:///nonexistent/docker.sock"})


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["app", "cp"], "--pid PID is required with --engine criu"),
        (["app", "cp", "--engine", "runc", "--pid", "42"], "--pid is not taken by --engine runc"),
        (["app", "cp", "--engine", "docker", "--pid", "42"], "TARGET (app) is the container"),
        (["app", "cp", "--pid", "LIVE", "--ignore-rootfs"], "only to the podman engine"),
        (["app", "cp", "--engine", "runc", "--ignore-rootfs"], "only the podman engine"),
        (["app", "cp", "--engine", "nope"], "unknown engine 'nope' (available: criu, docker"),
    ],
)
def test_create_usage_errors_leave_nothing(
    host: Host, args: list[str], message: str, procs: ProcessTracker, tmp_path: Path
) -> None:
    """``LIVE`` stands for the PID of a live process (a missing PID is refused first)."""
    if "LIVE" in args:
        live = procs.counter(tmp_path / "live")
        args = [str(live.pid) if a == "LIVE" else a for a in args]
    done = host.cli("create", *args, check=False)
    assert done.returncode == 2, done.stderr
    assert message in done.stderr
    assert_nothing_left(host, ask_cli=False)


def test_docker_takes_no_options_and_needs_a_local_socket(host: Host) -> None:
    done = host.cli("create", "web", "cp", "--engine", "docker", "--file-locks", check=False)
    assert done.returncode == 2 and "takes no checkpoint options" in done.stderr
    done = host.cli("create", "web", "cp", "--engine", "docker", check=False)
    assert done.returncode == 5 and "cannot reach dockerd at /nonexistent/docker.sock" in (
        done.stderr
    )
    assert_nothing_left(host)


def test_doctor_lists_every_engine_and_why_one_is_unavailable(host: Host) -> None:
    done = host.cli("doctor", "--json", check=False)
    report = json.loads(done.stdout)
    checks = {c["name"]: c for c in report["checks"]}
    assert {"criu", "runc", "podman", "docker", "store", "catalog"} <= set(checks)
    docker = checks["docker"]
    assert docker["ok"] is False and docker["optional"] is True
    assert "no dockerd socket at /nonexistent/docker.sock" in docker["error"]
    for name in ("runc", "podman"):
        assert checks[name]["ok"] or checks[name]["error"], checks[name]
    # A warning (the store named but not created yet) does not fail the report.
    assert checks["store"]["warning"] and not checks["store"]["ok"]
    assert report["ok"] == all(
        c["ok"] or c["warning"] for c in report["checks"] if not c["optional"]
    )
    text = host.cli("doctor", check=False).stdout
    assert "[n/a ] docker:" in text


def test_docker_host_must_be_a_unix_socket() -> None:
    assert socket_path({}) == DEFAULT_SOCKET
    assert socket_path({"DOCKER_HOST": "unix:///run/x.sock"}) == "/run/x.sock"
    with pytest.raises(EngineError, match="is not a unix socket"):
        socket_path({"DOCKER_HOST": "tcp://10.0.0.1:2375"})
    availability = DockerEngine(socket="/nonexistent.sock").available()
    assert not availability.ok and "no dockerd socket" in (availability.reason or "")


def test_missing_runtimes_are_unavailable_with_a_reason(tmp_path: Path) -> None:
    for engine in (RuncEngine(runc_path=str(tmp_path / "runc")),
                   PodmanEngine(podman_path=str(tmp_path / "podman"))):
        availability = engine.available()
        assert not availability.ok and availability.reason, engine.name
        assert "cannot run" in availability.reason


def test_restore_options_that_do_not_apply_are_refused(tmp_path: Path) -> None:
    with pytest.raises(UsageError, match="--as and --bundle apply to container engines"):
        CriuEngine("/nonexistent/criu").restore(tmp_path, RestoreOptions(container="x"))
    with pytest.raises(UsageError, match="--bundle applies only to the runc engine"):
        PodmanEngine("/nonexistent/criu").restore(tmp_path, RestoreOptions(bundle="/b"))
    with pytest.raises(UsageError, match="--bundle applies only to the runc engine"):
        DockerEngine().restore(tmp_path, RestoreOptions(bundle="/b"))
    with pytest.raises(UsageError, match="only the podman engine"):
        check_options(["--ignore-rootfs"], "runc", frozenset())
    with pytest.raises(UsageError, match="takes no checkpoint options"):
        DockerEngine().dump("web", tmp_path, DumpOptions(extra_args=("--tcp-established",)))


def test_runtime_failure_carries_criu_reason_and_log_tail(tmp_path: Path) -> None:
    log = tmp_path / "criu-dump.log"
    log.write_text(
        "(00.01) Error (criu/util.c:1534): rlimit: Can't setup RLIMIT_NOFILE for self\n"
        "(00.19) Error (criu/sk-inet.c:200): inet: Connected TCP socket, consider using "
        "--tcp-established option.\n"
        "(00.25) Error (criu/cr-dump.c:1975): Dumping FAILED.\n"
    )
    containerd = f"runc did not terminate successfully: criu failed: path= {log}: unknown"
    podman = f'level=error msg="criu failed: type NOTIFY errno 0\\nlog file: {log}"'
    for text in (containerd, podman):
        assert named_log(text) == log
        message = runtime_failure("docker checkpoint create failed", text)
        assert message.startswith(
            "docker checkpoint create failed: inet: Connected TCP socket, consider using"
        )
        assert "--- last lines of criu criu-dump.log ---" in message
        assert "RLIMIT_NOFILE" not in message
    assert named_log("log file: dump.log") is None  # relative: not ours to read
    assert runtime_failure("x failed", "line 1\nline 2") == "x failed: line 1 / line 2"


def test_engine_modules_stay_below_400_lines() -> None:
    engines = Path(__file__).resolve().parent.parent / "src" / "cryostash" / "engines"
    for module in ("containers", "runc", "podman", "docker", "docker_api", "criu"):
        lines = (engines / f"{module}.py").read_text().count("\n")
        assert lines < 400, (module, lines)
