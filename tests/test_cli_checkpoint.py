"""Docker's checkpoint contract, end to end through the ``cryostash`` CLI, with real CRIU
(engine ``criu``): what the conformance suite (``test_engine_conformance.py``, which runs
the round trip, ``--leave-running``, taken names, missing checkpoints and PIDs, and a
failed dump on every engine) does not: a TCP server's state, checkpoint names, ``ls`` /
``inspect`` / ``rm`` / ``events`` output, blobs shared between checkpoints, and
``--checkpoint-dir``.

Every test gets its own local store, SQLite catalog and scratch folder (the ``cli``
fixture); every process it starts is tracked by ``procs`` and killed by PID when the
test ends.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.support.cli import Host, stored_files
from tests.support.processes import (
    ProcessTracker,
    free_port,
    read_counter,
    tcp_request,
    wait_pid_gone,
    wait_until,
)


def test_tcp_server_answers_with_its_state_after_restore(
    cli: Host, procs: ProcessTracker, tmp_path: Path
) -> None:
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
    cli: Host, bad: str
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
    assert not cli.home.exists() or stored_files(cli.home) == []
    assert not (cli.home / "catalog.db").exists()
    assert cli.scratch_entries() == []


def test_good_names_are_accepted(cli: Host, procs: ProcessTracker, tmp_path: Path) -> None:
    proc = procs.counter(tmp_path / "p")
    for name in ("good", "good.name", "good-name_1"):
        cli("create", "names.ok", name, "--pid", str(proc.pid), "--leave-running")
    assert cli("ls", "names.ok").stdout.splitlines() == [
        "CHECKPOINT NAME",
        "good",
        "good-name_1",
        "good.name",
    ]


def test_ls_inspect_rm_and_events(
    cli: Host, procs: ProcessTracker, tmp_path: Path
) -> None:
    proc = procs.counter(tmp_path / "p")
    for name in ("zeta", "alpha", "mid"):
        cli("create", "app", name, "--pid", str(proc.pid), "--leave-running", "--label", "k=v")
    cli("create", "other", "one", "--pid", str(proc.pid), "--leave-running")

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

    # The three app checkpoints share most blobs (same process, unchanged code pages).
    before_rm = set(stored_files(cli.home))
    cli("rm", "app", "mid")
    assert cli("ls", "app").stdout.splitlines() == ["CHECKPOINT NAME", "alpha", "zeta"]
    assert not any("checkpoints/app/mid" in f for f in stored_files(cli.home))
    assert set(stored_files(cli.home)) <= before_rm
    for name in ("alpha", "zeta"):
        cli("rm", "app", name)
    cli("rm", "other", "one")
    assert stored_files(cli.home) == [], "rm left objects behind"

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
    cli: Host, procs: ProcessTracker, tmp_path: Path
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


def test_dump_of_missing_pid_is_refused_before_anything_is_done(cli: Host) -> None:
    """criu's own: a PID that is no process is refused before the store and the catalog
    are touched (the conformance suite checks the exit code and reason on every engine)."""
    done = cli("create", "ghost", "cp", "--pid", "4194000", check=False)
    assert done.returncode == 2  # a usage error, found before anything is done
    assert done.stderr.strip() == "Error: no process with PID 4194000"
    assert not (cli.home / "store").exists() or stored_files(cli.home) == []
    assert cli.scratch_entries() == []
    assert cli.json("ls") == [] and cli.json("events") == []


def test_checkpoint_dir_is_a_separate_store(
    cli: Host, procs: ProcessTracker, tmp_path: Path
) -> None:
    proc = procs.counter(tmp_path / "p")
    elsewhere = tmp_path / "elsewhere"
    cli("create", "app", "away", "--pid", str(proc.pid), "--checkpoint-dir", str(elsewhere))
    wait_pid_gone(proc.pid)
    assert (elsewhere / "checkpoints" / "app" / "away" / "manifest.json").is_file()
    assert cli("ls", "app").stdout.splitlines() == ["CHECKPOINT NAME"]
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


def test_checkpoint_dir_naming_a_file_is_refused(cli: Host, tmp_path: Path) -> None:
    a_file = tmp_path / "plain-file"
    a_file.write_text("x")
    done = cli("create", "app", "cp", "--pid", "1", "--checkpoint-dir", str(a_file), check=False)
    assert done.returncode == 2
    assert f"{a_file} exists and is not a directory" in done.stderr
    assert a_file.read_text() == "x"
