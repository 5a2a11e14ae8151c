"""``cryostash daemon``: a real daemon (a subprocess on its own socket, with the test's
store, catalog and scratch) serving the verbs through the same operations as the command
line; errors mapped to HTTP statuses; metrics parsed with prometheus_client's parser; a
private socket; SIGTERM finishing the operation in flight; versions checked both ways.
"""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from cryostash import __version__
from cryostash.errors import CheckpointNotFound, DaemonError
from tests.support import daemon_rig
from tests.support.daemon_rig import Daemon
from tests.support.processes import (
    ProcessTracker,
    pid_exists,
    read_counter,
    wait_pid_gone,
    wait_until,
)


@pytest.fixture
def home(tmp_path: Path) -> Path:
    return tmp_path / "cs"


@pytest.fixture
def daemon(home: Path, criu_path: str) -> Iterator[Daemon]:
    """A daemon on ``home``; SIGTERM at the end: exit 0, socket removed."""
    with daemon_rig.running(home, criu_path) as running:
        yield running


def _count(metrics: dict[Any, float], name: str, **labels: str) -> float:
    """The sum of ``name``'s samples whose labels include ``labels``."""
    return sum(
        value
        for (sample, sample_labels), value in metrics.items()
        if sample == name and set(labels.items()) <= set(sample_labels)
    )


def test_counter_round_trip_through_the_verbs(
    daemon: Daemon, procs: ProcessTracker, tmp_path: Path
) -> None:
    proc = procs.counter(tmp_path / "p")
    assert proc.counter_path is not None
    counter = proc.counter_path
    wait_until(lambda: read_counter(counter) >= 5, 10, "counter to reach 5")

    made = daemon.ok("create", target="counter", name="first", locator=str(proc.pid),
                     labels={"tier": "test"})

    assert (made["target"], made["name"], made["status"]) == ("counter", "first", "committed")
    assert made["labels"] == {"tier": "test"} and made["stats"]["bytes_uploaded"] > 0
    wait_pid_gone(proc.pid)
    stopped_at = read_counter(counter)
    listed = daemon.ok("ls", target="counter")
    assert [row["info"]["name"] for row in listed["rows"]] == ["first"]
    assert daemon.ok("ls", names_only=True)["names"] == [["counter", "first"]]
    other = procs.counter(tmp_path / "other")  # a live process: the name is what is refused
    status, taken = daemon.verb("create", target="counter", name="first",
                                locator=str(other.pid), leave_running=True)
    assert status == 409 and taken["kind"] == "CheckpointExists" and taken["exit_code"] == 4
    assert taken["message"] == "checkpoint with name first already exists for container counter"

    restored = daemon.ok("restore", target="counter", name="first")
    pid = procs.track(restored["pid"])
    assert pid_exists(pid)
    wait_until(lambda: read_counter(counter) >= stopped_at + 5, 10, "the counter to go on")

    removed = daemon.ok("rm", target="counter", name="first")
    assert (removed["target"], removed["name"]) == ("counter", "first")
    assert removed["blobs_deleted"]
    assert daemon.ok("ls")["rows"] == []
    events = [e["action"] for e in daemon.ok("events", target="counter")]
    assert sorted(events) == ["checkpoint", "delete", "restore"]

    metrics = daemon.metrics()
    ops = "cryostash_daemon_operations_total"
    assert _count(metrics, ops, verb="create") == 2  # one made, one refused
    assert _count(metrics, ops, verb="restore") == 1
    assert _count(metrics, ops, verb="rm") == 1
    assert _count(metrics, ops, verb="ls") == 3
    fails = "cryostash_daemon_operation_failures_total"
    assert _count(metrics, fails, verb="create", kind="CheckpointExists", exit_code="4") == 1
    assert _count(metrics, fails) == 1
    assert _count(metrics, "cryostash_daemon_stored_bytes_total", verb="create") == (
        made["stats"]["bytes_uploaded"]
    )
    assert _count(metrics, "cryostash_daemon_stored_bytes_total", verb="restore") > 0
    assert _count(metrics, "cryostash_daemon_operation_duration_seconds_count", verb="rm") == 1
    assert _count(metrics, "cryostash_daemon_operations_in_flight") == 0


def test_errors_have_the_command_lines_words_codes_and_http_statuses(daemon: Daemon) -> None:
    status, bad = daemon.verb("rm", target="web", name="bad name")
    assert status == 400 and bad == {
        "message": "Invalid checkpoint ID (bad name), only [a-zA-Z0-9][a-zA-Z0-9_.-] are allowed",
        "exit_code": 2,
        "kind": "InvalidName",
    }
    status, missing = daemon.verb("rm", target="web", name="cp1")
    assert status == 404 and missing["kind"] == "CheckpointNotFound"
    assert missing["message"] == "checkpoint cp1 does not exist for container web"
    assert missing["exit_code"] == 3

    status, unknown = daemon.verb("rm", target="web", name="cp1", force=True)
    assert status == 400 and "unknown field(s) 'force'" in unknown["message"]
    status, typed = daemon.verb("ls", names_only="yes")
    assert status == 400
    assert typed["message"] == "ls.names_only: expected true or false, got a string"
    status, lacking = daemon.verb("rm", target="web")
    assert status == 400 and lacking["message"] == "rm: missing field(s) 'name'"
    status, nonverb = daemon.verb("frobnicate")
    assert status == 400 and "unknown verb 'frobnicate'" in nonverb["message"]
    status, stream = daemon.verb("export", target="web", name="cp1")
    assert status == 501 and "not served by the daemon yet" in stream["message"]
    status, elsewhere = daemon.verb("ls", checkpoint_dir="/tmp/elsewhere")
    assert status == 403 and elsewhere["kind"] == "NotAllowed"
    assert "--allow-checkpoint-dir" in elsewhere["message"]
    status, since = daemon.verb("ls", filters={"since": "2026-01-01T00:00:00"})
    assert status == 400 and "needs an offset" in since["message"]
    assert daemon.ok("ls", filters={"since": "2026-01-01T00:00:00Z", "labels": {"a": "b"}})

    with pytest.raises(CheckpointNotFound, match="checkpoint cp1 does not exist"):
        daemon_rig.client.call("rm", {"target": "web", "name": "cp1"}, socket_path=daemon.socket)

    metrics = daemon.metrics()
    fails = "cryostash_daemon_operation_failures_total"
    assert _count(metrics, fails, verb="rm", kind="InvalidName", exit_code="2") == 1
    assert _count(metrics, fails, verb="rm", kind="CheckpointNotFound", exit_code="3") == 2
    # Refused before running (decoding, configuration): no operation counted.
    assert _count(metrics, "cryostash_daemon_operations_total", verb="ls") == 1
    assert '"event": "operation"' in daemon.logs() and "bad name" in daemon.logs()


def test_allowed_checkpoint_dir_is_served(home: Path, criu_path: str, tmp_path: Path) -> None:
    other = tmp_path / "other-store"
    with daemon_rig.running(home, criu_path, "--allow-checkpoint-dir", str(other)) as daemon:
        assert daemon.ok("ls", checkpoint_dir=str(other)) == {"rows": [], "names": []}
        status, _ = daemon.verb("ls", checkpoint_dir=str(tmp_path / "third"))
        assert status == 403


def test_socket_is_private_and_sigterm_finishes_the_create_in_flight(
    home: Path, criu_path: str, procs: ProcessTracker, tmp_path: Path
) -> None:
    ready, go = tmp_path / "ready", tmp_path / "go"
    daemon = daemon_rig.start(home, criu_path, pause=("after-upload", ready, go))
    try:
        assert stat.S_IMODE(daemon.socket.stat().st_mode) == 0o600
        assert stat.S_IMODE(daemon.socket.parent.stat().st_mode) == 0o700
        assert daemon.socket.stat().st_uid == 0
        proc = procs.counter(tmp_path / "p")
        replies: list[tuple[int, Any]] = []
        create = threading.Thread(target=lambda: replies.append(daemon.verb(
            "create", target="counter", name="drained", locator=str(proc.pid))))
        create.start()
        wait_until(ready.exists, 60, "the create to reach after-upload")
        assert daemon.request("GET", "/v1/status")[1]["in_flight"] == 1

        os.kill(daemon.pid, 15)  # SIGTERM: stop accepting, finish the create
        wait_until(lambda: not daemon.socket.exists(), 10, "the socket to go")
        assert daemon.proc.poll() is None, "the daemon left before its create finished"
        go.touch()
        create.join(60)
        assert daemon.proc.wait(60) == 0, daemon.logs()
    finally:
        go.touch()
        daemon.kill()
    assert replies and replies[0][0] == 200, replies
    assert replies[0][1]["status"] == "committed"
    logs = daemon.logs()
    assert logs.index('"event": "stopping"') < logs.index('"verb": "create"')
    listed = subprocess.run(
        [sys.executable, "-m", "cryostash", "ls"], env=daemon_rig.daemon_env(home, criu_path),
        capture_output=True, text=True, timeout=60, check=True,
    )
    assert "drained" in listed.stdout


def test_group_socket_is_0660_in_a_0750_folder(home: Path, criu_path: str) -> None:
    with daemon_rig.running(home, criu_path, "--group", "daemon") as daemon:
        info = daemon.socket.stat()
        assert stat.S_IMODE(info.st_mode) == 0o660 and info.st_gid == 1
        folder = daemon.socket.parent.stat()
        assert stat.S_IMODE(folder.st_mode) == 0o750 and folder.st_gid == 1


def test_a_socket_folder_others_may_write_to_is_refused(home: Path, tmp_path: Path) -> None:
    shared = tmp_path / "shared"
    shared.mkdir()
    shared.chmod(0o777)
    refused = subprocess.run(
        [sys.executable, "-m", "cryostash", "daemon", "--socket", str(shared / "cs.sock")],
        env=daemon_rig.daemon_env(home, "criu"), capture_output=True, text=True, timeout=60,
        check=False,
    )
    assert refused.returncode == 2
    assert f"the socket's folder {shared} is writable by others" in refused.stderr
    assert list(shared.iterdir()) == []


def test_a_second_daemon_on_a_live_socket_is_refused(daemon: Daemon, home: Path) -> None:
    env = daemon_rig.daemon_env(home, "criu")
    second = subprocess.run(
        [sys.executable, "-m", "cryostash", "daemon", "--socket", str(daemon.socket)],
        env=env, capture_output=True, text=True, timeout=60, check=False,
    )
    assert second.returncode == 2
    assert f"a daemon already listens on {daemon.socket}" in second.stderr
    assert daemon.answers()


def test_status_versions_and_health(daemon: Daemon, home: Path) -> None:
    env = daemon_rig.daemon_env(home, "criu")
    shown = subprocess.run(
        [sys.executable, "-m", "cryostash", "daemon", "status", "--socket", str(daemon.socket)],
        env=env, capture_output=True, text=True, timeout=60, check=True,
    )
    assert f"version:    {__version__}" in shown.stdout
    assert f"pid:        {daemon.pid}" in shown.stdout and "in flight:  0" in shown.stdout
    assert daemon.request("GET", "/healthz") == (200, {"status": "ok"})

    status, headers, body = daemon.raw("GET", "/v1/status", headers={
        "Cryostash-Version": "0.0.1"})
    refused = json.loads(body)
    assert status == 400 and refused["kind"] == "DaemonError"
    assert f"cryostash 0.0.1 (client) and the daemon (cryostash {__version__}) differ" in (
        refused["message"]
    )
    assert headers["Cryostash-Version"] == __version__
    with pytest.raises(DaemonError, match="differ"):
        daemon.request("GET", "/v1/status", version="9.9.9")

    nobody = subprocess.run(
        [sys.executable, "-m", "cryostash", "daemon", "status", "--socket", str(home / "none")],
        env=env, capture_output=True, text=True, timeout=60, check=False,
    )
    assert nobody.returncode == 13
    assert f"Error: no cryostash daemon answers on {home / 'none'}" in nobody.stderr
