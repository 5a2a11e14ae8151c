"""Docker's checkpoint contract, end to end through the ``cryostash`` CLI, with real CRIU.

Every scenario runs twice (``mode``): in process (no daemon), and through a real daemon
(``CRYOSTASH_DAEMON``; one per module, on its own socket, serving the same store, catalog
and scratch), with the same expected output and exit codes. In process, every test gets
its own local store, SQLite catalog and scratch folder; through the daemon, the module's
daemon's folders, emptied before each test. Every process a test starts is tracked by
``procs`` and killed by PID when the test ends.
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.support import daemon_rig
from tests.support.cli import host_env
from tests.support.daemon_rig import Daemon
from tests.support.processes import (
    ProcessTracker,
    pid_exists,
    read_counter,
    tcp_request,
    wait_pid_gone,
    wait_until,
)

Cli = Callable[..., subprocess.CompletedProcess[str]]


@pytest.fixture(scope="module")
def shared_daemon(tmp_path_factory: pytest.TempPathFactory, criu_path: str) -> Iterator[Daemon]:
    """The module's daemon, which may also serve ``HOME/elsewhere`` and ``HOME/plain-file``
    (``--checkpoint-dir``; a daemon keeps a store it opened, so a folder that later turns
    into a file is another test's: ``plain-file``)."""
    home = tmp_path_factory.mktemp("daemon") / "cs"
    allowed = [f"--allow-checkpoint-dir={home / d}" for d in ("elsewhere", "plain-file")]
    with daemon_rig.running(home, criu_path, *allowed) as running:
        yield running


@pytest.fixture(params=["in-process", "daemon"])
def mode(request: pytest.FixtureRequest) -> str:
    """How the CLI runs the verbs: in process, or through the module's daemon."""
    return str(request.param)


@pytest.fixture
def home(tmp_path: Path, mode: str, request: pytest.FixtureRequest) -> Path:
    """The data folder of one test: store, catalog and scratch (empty)."""
    if mode == "in-process":
        return tmp_path / "cs"
    daemon: Daemon = request.getfixturevalue("shared_daemon")
    daemon_rig.reset_home(daemon.home)
    return daemon.home


@pytest.fixture
def elsewhere(home: Path, tmp_path: Path, mode: str) -> Path:
    """A second store's folder (``--checkpoint-dir``), one the daemon may serve."""
    return home / "elsewhere" if mode == "daemon" else tmp_path / "elsewhere"


@pytest.fixture
def cli(home: Path, criu_path: str, mode: str, request: pytest.FixtureRequest) -> Iterator[Cli]:
    """Run ``cryostash`` as a user would (a new process), against the test's folders; in
    ``daemon`` mode through the daemon (asserted: it ran operations for the test)."""
    env = host_env(home, criu=criu_path)
    env.pop("CRYOSTASH_DAEMON", None)
    daemon: Daemon | None = None
    if mode == "daemon":
        daemon = request.getfixturevalue("shared_daemon")
        env["CRYOSTASH_DAEMON"] = f"unix://{daemon.socket}"
        served = _operations(daemon)

    def run(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        done = subprocess.run(
            [sys.executable, "-m", "cryostash", *args],
            capture_output=True,
            text=True,
            env=env,
            timeout=120,
        )
        if check and done.returncode != 0:
            raise AssertionError(
                f"cryostash {' '.join(args)} exited {done.returncode}: {done.stderr}"
            )
        return done

    yield run
    if daemon is not None:
        assert _operations(daemon) > served, "no command of the test went through the daemon"


def _operations(daemon: Daemon) -> float:
    """Operations the daemon ran (finished, failed or not)."""
    return sum(
        value for (sample, _), value in daemon.metrics().items()
        if sample == "cryostash_daemon_operations_total"
    )


def stored_files(home: Path) -> list[str]:
    """Every file in the store (bypassing cryostash)."""
    root = home / "store"
    return sorted(str(p.relative_to(root)) for p in root.rglob("*") if p.is_file())


def scratch_entries(home: Path) -> list[str]:
    root = home / "scratch"
    return sorted(p.name for p in root.iterdir()) if root.exists() else []


def test_counter_is_checkpointed_gone_and_goes_on_after_restore(
    cli: Cli, procs: ProcessTracker, tmp_path: Path, home: Path
) -> None:
    proc = procs.counter(tmp_path / "p")
    assert proc.counter_path is not None
    wait_until(lambda: read_counter(proc.counter_path) >= 10, 10, "counter to reach 10")

    out = cli("create", "counter", "first", "--pid", str(proc.pid), "--label", "tier=test")
    assert out.stdout.strip() == "first"
    wait_pid_gone(proc.pid)
    stopped_at = read_counter(proc.counter_path)
    assert stopped_at >= 10
    assert scratch_entries(home) == []

    restored = json.loads(cli("restore", "counter", "first", "--json").stdout)
    pid = procs.track(restored["pid"])
    assert pid_exists(pid)
    first_seen = read_counter(proc.counter_path)
    assert first_seen >= stopped_at, "the restored counter restarted instead of going on"
    wait_until(lambda: read_counter(proc.counter_path) >= stopped_at + 10, 10, "counter to go on")
    assert scratch_entries(home) == []


def test_leave_running_keeps_the_process_counting(
    cli: Cli, procs: ProcessTracker, tmp_path: Path
) -> None:
    proc = procs.counter(tmp_path / "p")
    assert proc.counter_path is not None
    wait_until(lambda: read_counter(proc.counter_path) >= 5, 10, "counter to reach 5")
    before = read_counter(proc.counter_path)
    cli("create", "counter", "live", "--pid", str(proc.pid), "--leave-running")
    at_dump = read_counter(proc.counter_path)
    wait_until(lambda: read_counter(proc.counter_path) >= at_dump + 5, 10, "counter to go on")
    assert pid_exists(proc.pid)

    # The checkpoint holds the state of the dump, not of now: restore it in place.
    from tests.support.processes import kill_pid

    kill_pid(proc.pid)
    restored = json.loads(cli("restore", "counter", "live", "--json").stdout)
    procs.track(restored["pid"])
    wait_until(lambda: read_counter(proc.counter_path) > 0, 10, "restored counter to write")
    value = read_counter(proc.counter_path)
    assert before <= value, "restored counter lost its memory"


def test_tcp_server_answers_with_its_state_after_restore(
    cli: Cli, procs: ProcessTracker, tmp_path: Path
) -> None:
    from tests.support.processes import free_port

    port = free_port()
    server = procs.tcp_server(tmp_path / "srv", port)
    assert tcp_request(port, "SET greeting hello-from-before") == "OK"
    assert tcp_request(port, "SET answer 42") == "OK"

    cli("create", "kv", "warm", "--pid", str(server.pid))
    wait_pid_gone(server.pid)
    restored = json.loads(cli("restore", "kv", "warm", "--json").stdout)
    procs.track(restored["pid"])
    assert tcp_request(port, "GET greeting") == "hello-from-before"
    assert tcp_request(port, "GET answer") == "42"
    assert tcp_request(port, "STATS").startswith("served=")


BAD_NAMES = ["..", "../escape", "foo/../..", "/abs", "bad name", "", "   ", "a"]


@pytest.mark.parametrize("bad", BAD_NAMES)
def test_invalid_names_are_refused_on_every_verb_and_nothing_is_written(
    cli: Cli, home: Path, bad: str, mode: str
) -> None:
    name_msg = f"Invalid checkpoint ID ({bad}), only [a-zA-Z0-9][a-zA-Z0-9_.-] are allowed"
    target_msg = f"Invalid container name ({bad}), only [a-zA-Z0-9][a-zA-Z0-9_.-] are allowed"
    calls = [
        (["create", "ok-target", bad, "--pid", "1"], name_msg),
        (["create", bad, "ok-name", "--pid", "1"], target_msg),
        (["rm", "ok-target", bad], name_msg),
        (["rm", bad, "ok-name"], target_msg),
        (["restore", "ok-target", bad], name_msg),
        (["restore", bad, "ok-name"], target_msg),
        (["inspect", "ok-target", bad], name_msg),
        (["inspect", bad, "ok-name"], target_msg),
    ]
    for args, message in calls:
        done = cli(*args, check=False)
        assert done.returncode == 2, (args, done.stderr)
        assert message in done.stderr, (args, done.stderr)
    assert not (home / "store").exists() or stored_files(home) == []
    if mode == "in-process":
        assert not (home / "catalog.db").exists()
    else:  # the daemon's catalog exists: nothing was written to it
        assert daemon_rig.catalog_counts(home) == {"checkpoints": 0, "events": 0}
    assert scratch_entries(home) == []


def test_good_names_are_accepted(cli: Cli, procs: ProcessTracker, tmp_path: Path) -> None:
    proc = procs.counter(tmp_path / "p")
    for name in ("good", "good.name", "good-name_1"):
        cli("create", "names.ok", name, "--pid", str(proc.pid), "--leave-running")
    assert cli("ls", "names.ok").stdout.splitlines() == [
        "CHECKPOINT NAME",
        "good",
        "good-name_1",
        "good.name",
    ]


def test_duplicate_missing_ls_inspect_rm_and_events(
    cli: Cli, procs: ProcessTracker, tmp_path: Path, home: Path
) -> None:
    proc = procs.counter(tmp_path / "p")
    for name in ("zeta", "alpha", "mid"):
        cli("create", "app", name, "--pid", str(proc.pid), "--leave-running", "--label", "k=v")
    cli("create", "other", "one", "--pid", str(proc.pid), "--leave-running")

    dup = cli("create", "app", "alpha", "--pid", str(proc.pid), "--leave-running", check=False)
    assert dup.returncode == 4
    assert "checkpoint with name alpha already exists for container app" in dup.stderr
    assert pid_exists(proc.pid)

    assert cli("ls", "app").stdout.splitlines() == ["CHECKPOINT NAME", "alpha", "mid", "zeta"]
    everything = cli("ls").stdout.splitlines()
    assert everything[0].split() == ["CONTAINER", "CHECKPOINT", "NAME"]
    assert [line.split() for line in everything[1:]] == [
        ["app", "alpha"],
        ["app", "mid"],
        ["app", "zeta"],
        ["other", "one"],
    ]
    listed = json.loads(cli("ls", "app", "--json").stdout)
    assert [c["name"] for c in listed] == ["alpha", "mid", "zeta"]
    for c in listed:
        assert set(c) >= {
            "name",
            "target",
            "status",
            "created_at",
            "host",
            "engine",
            "size_bytes",
            "labels",
        }
        assert c["status"] == "committed" and c["host"] == "host-a" and c["engine"] == "criu"
        assert c["size_bytes"] > 0 and c["labels"] == {"k": "v"}

    shown = json.loads(cli("inspect", "app", "mid", "--json").stdout)
    assert shown["name"] == "mid" and shown["target"] == "app"
    assert shown["root_pid"] == proc.pid
    assert any(f["path"].startswith("pages-") for f in shown["files"])
    assert sum(f["size"] for f in shown["files"]) == shown["size_bytes"]
    text = cli("inspect", "app", "mid").stdout
    assert "host:" in text and "host-a" in text

    for verb in ("restore", "rm", "inspect"):
        missing = cli(verb, "app", "nope", check=False)
        assert missing.returncode == 3, verb
        assert "checkpoint nope does not exist for container app" in missing.stderr

    # The three app checkpoints share most blobs (same process, unchanged code pages).
    before_rm = set(stored_files(home))
    cli("rm", "app", "mid")
    assert cli("ls", "app").stdout.splitlines() == ["CHECKPOINT NAME", "alpha", "zeta"]
    assert not any("checkpoints/app/mid" in f for f in stored_files(home))
    assert set(stored_files(home)) <= before_rm
    for name in ("alpha", "zeta"):
        cli("rm", "app", name)
    cli("rm", "other", "one")
    assert stored_files(home) == [], "rm left objects behind"

    events = json.loads(cli("events", "app", "--json").stdout)
    actions = [(e["action"], e["name"]) for e in events]
    assert actions == [
        ("checkpoint", "zeta"),
        ("checkpoint", "alpha"),
        ("checkpoint", "mid"),
        ("delete", "mid"),
        ("delete", "alpha"),
        ("delete", "zeta"),
    ]
    assert all(e["host"] == "host-a" and e["target"] == "app" and e["time"] for e in events)


def test_rm_keeps_blobs_another_checkpoint_uses(
    cli: Cli, procs: ProcessTracker, tmp_path: Path
) -> None:
    proc = procs.counter(tmp_path / "p")
    cli("create", "shared", "one", "--pid", str(proc.pid), "--leave-running")
    cli("create", "shared", "two", "--pid", str(proc.pid))
    wait_pid_gone(proc.pid)
    cli("rm", "shared", "one")
    restored = json.loads(cli("restore", "shared", "two", "--json").stdout)
    procs.track(restored["pid"])
    assert proc.counter_path is not None
    at = read_counter(proc.counter_path)
    wait_until(lambda: read_counter(proc.counter_path) > at, 10, "counter to go on")
    events = [e["action"] for e in json.loads(cli("events", "--json").stdout)]
    assert events == ["checkpoint", "checkpoint", "delete", "restore"]


def test_dump_of_missing_pid_fails_and_leaves_nothing(cli: Cli, home: Path) -> None:
    done = cli("create", "ghost", "cp", "--pid", "4194000", check=False)
    assert done.returncode == 2  # a usage error, found before anything is done
    assert done.stderr.strip() == "Error: no process with PID 4194000"
    assert scratch_entries(home) == []
    if (home / "store").exists():  # the daemon's store
        assert stored_files(home) == []
        assert json.loads(cli("ls", "--json").stdout) == []
        assert json.loads(cli("events", "--json").stdout) == []
    else:  # nothing was ever written: a reading verb names the missing store
        done = cli("ls", check=False)
        assert done.returncode == 3 and "does not exist" in done.stderr, done.stderr
        assert not (home / "store").exists()


def test_criu_failure_carries_the_log_tail_and_cleans_up(
    cli: Cli, procs: ProcessTracker, tmp_path: Path, home: Path
) -> None:
    proc = procs.counter(tmp_path / "p")
    done = cli(
        "create",
        "app",
        "broken",
        "--pid",
        str(proc.pid),
        "--criu-opt",
        "no-such-criu-option",
        check=False,
    )
    assert done.returncode == 5, done.stderr
    assert "Cannot checkpoint container app: " in done.stderr
    assert "no-such-criu-option" in done.stderr, "the reason should carry CRIU's own words"
    assert pid_exists(proc.pid), "a failed dump must leave the process running"
    assert stored_files(home) == [] if (home / "store").exists() else True
    assert scratch_entries(home) == []
    assert json.loads(cli("ls", "--json").stdout) == []
    # The name is free again.
    cli("create", "app", "broken", "--pid", str(proc.pid), "--leave-running")


def test_checkpoint_dir_is_a_separate_store(
    cli: Cli, procs: ProcessTracker, tmp_path: Path, home: Path, elsewhere: Path
) -> None:
    proc = procs.counter(tmp_path / "p")
    cli("create", "app", "away", "--pid", str(proc.pid), "--checkpoint-dir", str(elsewhere))
    wait_pid_gone(proc.pid)
    assert (elsewhere / "checkpoints" / "app" / "away" / "manifest.json").is_file()
    default = cli("ls", "app", check=False)  # the default store holds nothing of it
    if (home / "store").exists():
        assert default.stdout.splitlines() == ["CHECKPOINT NAME"]
    else:  # never written to: named as missing, not created
        assert default.returncode == 3 and "does not exist" in default.stderr
    assert cli("ls", "app", "--checkpoint-dir", str(elsewhere)).stdout.splitlines() == [
        "CHECKPOINT NAME",
        "away",
    ]
    restored = json.loads(
        cli("restore", "app", "away", "--checkpoint-dir", str(elsewhere), "--json").stdout
    )
    procs.track(restored["pid"])
    cli("rm", "app", "away", "--checkpoint-dir", str(elsewhere))
    assert not [p for p in elsewhere.rglob("*") if p.is_file()]


def test_checkpoint_dir_naming_a_file_is_refused(
    cli: Cli, home: Path, tmp_path: Path, mode: str
) -> None:
    a_file = home / "plain-file" if mode == "daemon" else tmp_path / "plain-file"
    a_file.parent.mkdir(parents=True, exist_ok=True)
    a_file.write_text("x")
    done = cli("create", "app", "cp", "--pid", "1", "--checkpoint-dir", str(a_file), check=False)
    assert done.returncode == 2
    assert f"{a_file} exists and is not a directory" in done.stderr
    assert a_file.read_text() == "x"
