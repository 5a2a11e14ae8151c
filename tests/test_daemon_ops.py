"""The daemon's guarantees under failure, and its remote listener: a daemon SIGKILLed
mid-create leaves what a killed command leaves (nothing visible, the name free at once);
a client that disconnects mid-restore cancels it as Ctrl-C would (no scratch, no
restored process, no reservation); ``--listen tcp://`` only with mutual TLS.
"""

from __future__ import annotations

import contextlib
import http.client
import json
import os
import signal
import socket
import ssl
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any

import pytest

from tests.support import cli, daemon_rig
from tests.support.daemon_rig import Daemon
from tests.support.processes import ProcessTracker, pid_exists, read_counter, wait_until
from tests.support.tls_certs import Authority, Pair


@pytest.fixture
def home(tmp_path: Path) -> Path:
    return tmp_path / "cs"


def _scratch(home: Path) -> list[str]:
    folder = home / "scratch"
    return sorted(os.listdir(folder)) if folder.exists() else []


def _log_events(daemon: Daemon) -> list[dict[str, Any]]:
    return [json.loads(line) for line in daemon.logs().splitlines() if line.startswith("{")]


@pytest.mark.criu
@pytest.mark.parametrize("next_create", ["cli", "restarted-daemon"])
def test_a_daemon_killed_mid_create_frees_the_name_at_once(
    home: Path, criu_path: str, procs: ProcessTracker, tmp_path: Path, next_create: str
) -> None:
    """The reservation records the daemon's PID as its creator: once the daemon is dead
    (PID gone, scratch lock free) the next create of the name on this host undoes it at
    once, without gc and without waiting for the lease (an hour here)."""
    ready, go = tmp_path / "ready", tmp_path / "go"
    proc = procs.counter(tmp_path / "p")
    env = {**daemon_rig.daemon_env(home, criu_path), "CRYOSTASH_LEASE": "1h"}
    daemon = daemon_rig.start(home, criu_path, pause=("after-upload", ready, go))
    replies: list[object] = []

    def create() -> None:
        try:
            replies.append(daemon.verb("create", target="app", name="cp",
                                       locator=str(proc.pid), leave_running=True))
        except Exception as exc:  # the daemon dies under it
            replies.append(exc)

    asker = threading.Thread(target=create)
    try:
        asker.start()
        wait_until(ready.exists, 60, "the create to reach after-upload")
        os.kill(daemon.pid, signal.SIGKILL)
        assert daemon.proc.wait(30) == -signal.SIGKILL
        asker.join(30)
    finally:
        go.touch()
        daemon.kill()
    assert replies and not isinstance(replies[0], tuple), "the killed daemon answered"
    assert len(_scratch(home)) == 1, "the killed daemon's scratch folder is its evidence"
    listed = json.loads(cli.run(["ls", "--all", "--json"], env).stdout)
    assert [(row["name"], row["status"]) for row in listed] == [("cp", "abandoned")]
    assert listed[0]["owner"]["pid"] == daemon.pid
    assert cli.run(["ls", "--json"], env).stdout.strip() == "[]", "a killed create is visible"

    if next_create == "cli":
        again = cli.run(["create", "app", "cp", "--pid", str(proc.pid), "--leave-running"],
                        env, check=False)
        assert again.returncode == 0, again.stderr
    else:
        with daemon_rig.running(home, criu_path, socket=daemon.socket) as restarted:
            made = restarted.ok("create", target="app", name="cp", locator=str(proc.pid),
                                leave_running=True)
            assert made["status"] == "committed"
    listed = json.loads(cli.run(["ls", "--all", "--json"], env).stdout)
    assert [(row["name"], row["status"]) for row in listed] == [("cp", "committed")]
    events = json.loads(cli.run(["events", "app", "--json"], env).stdout)
    assert sorted(e["action"] for e in events) == ["checkpoint", "gc-abort"]
    undone = next(e for e in events if e["action"] == "gc-abort")
    assert undone["detail"]["owner_pid"] == daemon.pid
    cli.run(["gc", "--grace", "0"], env)  # the dead daemon's scratch folder
    assert _scratch(home) == []
    assert cli.run(["verify", "--read-data"], env).returncode == 0


def _send_and_hang_up(sock_path: Path, verb: str, fields: dict[str, Any]) -> socket.socket:
    """A raw client that sends ``POST /v1/verbs/VERB`` and has not read the reply."""
    body = json.dumps(fields).encode()
    conn = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    conn.connect(str(sock_path))
    conn.sendall(
        f"POST /v1/verbs/{verb} HTTP/1.1\r\nHost: localhost\r\nContent-Type: "
        f"application/json\r\nContent-Length: {len(body)}\r\n\r\n".encode() + body
    )
    return conn


@pytest.mark.criu
def test_a_client_gone_mid_restore_cancels_it_like_ctrl_c(
    home: Path, criu_path: str, procs: ProcessTracker, tmp_path: Path
) -> None:
    ready, go = tmp_path / "ready", tmp_path / "go"
    proc = procs.counter(tmp_path / "p")
    assert proc.counter_path is not None
    counter = proc.counter_path
    wait_until(lambda: read_counter(counter) >= 3, 10, "the counter to count")
    with daemon_rig.running(home, criu_path, pause=("mid-download", ready, go)) as daemon:
        daemon.ok("create", target="app", name="cp", locator=str(proc.pid))
        wait_until(lambda: not pid_exists(proc.pid), 10, "the dumped process to go")

        client = _send_and_hang_up(daemon.socket, "restore", {"target": "app", "name": "cp"})
        try:
            wait_until(ready.exists, 60, "the restore to write its first chunk")
            assert len(_scratch(home)) == 1
        finally:
            client.close()  # Ctrl-C of the client
        wait_until(lambda: '"event": "cancelling"' in daemon.logs(), 30,
                   "the daemon to see its client go")
        go.touch()
        wait_until(lambda: '"outcome": "cancelled"' in daemon.logs(), 60,
                   "the restore to stop")

        assert _scratch(home) == [], "the cancelled restore left its scratch folder"
        assert not pid_exists(proc.pid), "the cancelled restore restored the process"
        assert [e["action"] for e in daemon.ok("events", target="app")] == ["checkpoint"]
        assert [r["state"] for r in daemon.ok("ls", show="all")["rows"]] == ["committed"]
        assert daemon.request("GET", "/v1/status")[1]["in_flight"] == 0
        fails = daemon.metrics()
        key = ("cryostash_daemon_operation_failures_total",
               (("exit_code", "130"), ("kind", "Interrupted"), ("verb", "restore")))
        assert fails[key] == 1
        operation = [e for e in _log_events(daemon) if e.get("outcome") == "cancelled"]
        assert operation[0]["verb"] == "restore"

        restored = daemon.ok("restore", target="app", name="cp")  # nothing left in the way
        procs.track(restored["pid"])
        stopped_at = read_counter(counter)
        wait_until(lambda: read_counter(counter) >= stopped_at + 3, 10, "the counter to go on")


@pytest.mark.criu
def test_a_client_gone_mid_create_cancels_it_and_gives_the_process_back(
    home: Path, criu_path: str, procs: ProcessTracker, tmp_path: Path
) -> None:
    """Cancelled after its dump stopped the process, before the upload: the reservation,
    blobs and scratch are undone, the process runs again, the name is free."""
    ready, go = tmp_path / "ready", tmp_path / "go"
    proc = procs.counter(tmp_path / "p")
    assert proc.counter_path is not None
    counter = proc.counter_path
    with daemon_rig.running(home, criu_path, pause=("after-dump", ready, go)) as daemon:
        client = _send_and_hang_up(daemon.socket, "create",
                                   {"target": "app", "name": "cp", "locator": str(proc.pid)})
        try:
            wait_until(ready.exists, 60, "the create to dump")
        finally:
            client.close()
        wait_until(lambda: '"event": "cancelling"' in daemon.logs(), 30,
                   "the daemon to see its client go")
        go.touch()
        wait_until(lambda: '"outcome": "cancelled"' in daemon.logs(), 60, "the create to stop")

        assert daemon.ok("ls", show="all")["rows"] == [], "a reservation or row is left"
        assert _scratch(home) == []
        assert list((home / "store").rglob("blobs/*/*")) == []
        at = read_counter(counter)
        wait_until(lambda: read_counter(counter) >= at + 3, 10, "the process to run again")
        made = daemon.ok("create", target="app", name="cp", locator=str(proc.pid),
                         leave_running=True)
        assert made["status"] == "committed"


# -- TCP with mutual TLS ------------------------------------------------------------------


@pytest.fixture
def pki(tmp_path: Path) -> dict[str, Any]:
    ca = Authority(tmp_path / "pki", "cryostash-test-ca")
    stranger = Authority(tmp_path / "pki-other", "another-ca")
    return {
        "ca": ca.pem, "server": ca.issue("daemon", server=True),
        "client": ca.issue("client", server=False),
        "stranger": stranger.issue("stranger", server=False),
    }


def _tls_args(pki: dict[str, Any], address: str = "tcp://127.0.0.1:0") -> list[str]:
    server: Pair = pki["server"]
    return ["--listen", address, "--tls-cert", str(server.cert), "--tls-key", str(server.key),
            "--tls-client-ca", str(pki["ca"])]


def _port(daemon: Daemon) -> int:
    listening = next(e for e in _log_events(daemon) if e.get("event") == "listening")
    return int(listening["tcp"].rsplit(":", 1)[1])


def _context(pki: dict[str, Any], pair: Pair | None) -> ssl.SSLContext:
    context = ssl.create_default_context(cafile=str(pki["ca"]))
    if pair is not None:
        context.load_cert_chain(pair.cert, pair.key)
    return context


def _get(port: int, context: ssl.SSLContext, path: str) -> tuple[int, Any]:
    conn = http.client.HTTPSConnection("127.0.0.1", port, context=context, timeout=30)
    try:
        conn.request("GET", path)
        reply = conn.getresponse()
        return reply.status, json.loads(reply.read())
    finally:
        conn.close()


def test_tcp_serves_clients_with_a_certificate_of_its_ca_only(
    home: Path, criu_path: str, pki: dict[str, Any]
) -> None:
    with daemon_rig.running(home, criu_path, *_tls_args(pki)) as daemon:
        port = _port(daemon)
        status, found = _get(port, _context(pki, pki["client"]), "/v1/status")
        assert status == 200 and found["pid"] == daemon.pid
        assert _get(port, _context(pki, pki["client"]), "/v1/verbs/ls")[0] == 405
        served = daemon.logs().count('"event": "request"')

        for pair in (None, pki["stranger"]):  # no certificate; one of another CA
            with pytest.raises((ssl.SSLError, ConnectionError)):  # TLS 1.3: the alert
                _get(port, _context(pki, pair), "/v1/status")  # comes after the client's
            old = _context(pki, pair)  # handshake; TLS 1.2: the handshake itself fails
            old.maximum_version = ssl.TLSVersion.TLSv1_2
            raw = socket.create_connection(("127.0.0.1", port), timeout=30)
            with contextlib.closing(raw), pytest.raises(ssl.SSLError):
                old.wrap_socket(raw, server_hostname="127.0.0.1").close()
        assert daemon.logs().count('"event": "request"') == served, "a refused client was served"

        plain = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
        with contextlib.closing(plain), pytest.raises((http.client.HTTPException, OSError)):
            plain.request("GET", "/v1/status")
            plain.getresponse().read()
        assert daemon.answers(), "the UNIX socket is served as well"


@pytest.mark.parametrize(
    "drop",
    ["--tls-cert", "--tls-key", "--tls-client-ca", "all"],
)
def test_tcp_without_all_three_tls_options_is_refused(
    home: Path, pki: dict[str, Any], drop: str
) -> None:
    args = _tls_args(pki)
    if drop == "all":
        args = args[:2]
    else:
        at = args.index(drop)
        del args[at : at + 2]
    refused = subprocess.run(
        [sys.executable, "-m", "cryostash", "daemon", "--socket", str(home / "run" / "cs.sock"),
         *args],
        env=daemon_rig.daemon_env(home, "criu"), capture_output=True, text=True, timeout=60,
        check=False,
    )
    assert refused.returncode == 2, refused.stderr
    assert "needs mutual TLS" in refused.stderr
    missing = ["--tls-cert", "--tls-key", "--tls-client-ca"] if drop == "all" else [drop]
    assert all(option in refused.stderr for option in missing)
    assert not (home / "run" / "cs.sock").exists()


def test_tls_options_without_listen_and_a_bad_address_are_refused(
    home: Path, pki: dict[str, Any]
) -> None:
    env = daemon_rig.daemon_env(home, "criu")
    sock = str(home / "run" / "cs.sock")
    lonely = subprocess.run(
        [sys.executable, "-m", "cryostash", "daemon", "--socket", sock, *_tls_args(pki)[2:]],
        env=env, capture_output=True, text=True, timeout=60, check=False,
    )
    assert lonely.returncode == 2
    assert "only go with --listen tcp://ADDR:PORT" in lonely.stderr
    bad = subprocess.run(
        [sys.executable, "-m", "cryostash", "daemon", "--socket", sock,
         *_tls_args(pki, "http://127.0.0.1")],
        env=env, capture_output=True, text=True, timeout=60, check=False,
    )
    assert bad.returncode == 2 and "expected tcp://ADDR:PORT" in bad.stderr
