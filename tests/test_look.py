"""A look inside checkpoints: ``inspect --tree/--files/--memory`` and ``diff``, read from the
CRIU images of real CRIU checkpoints with CRIU's own pycriu (never the pages, no restore).

Every test gets its own local store, SQLite catalog and scratch folder; every process it
starts is tracked by ``procs`` and killed by PID when the test ends.
"""

from __future__ import annotations

import json
import os
import struct
import subprocess
import sys
from pathlib import Path

import pytest

from cryostash.engines.criu_contents import read_contents
from cryostash.errors import IntegrityError
from cryostash.operations.inspect_contents import ContentsRequest, inspect_contents
from tests.support.cli import Host, run
from tests.support.fake_engine import FakeManager, write_tree
from tests.support.processes import (
    ZOMBIE_PROG,
    ProcessTracker,
    free_port,
    read_counter,
    wait_until,
)
from tests.support.setups import Setup, setup_fixture  # noqa: F401

#: CRIU's image magics (criu/include/magic.h): every image, then pstree's own.
COMMON, PSTREE = 0x54564319, 0x50273030


def test_inspect_shows_the_tree_files_and_memory_of_a_tcp_server(
    cli: Host, procs: ProcessTracker, tmp_path: Path
) -> None:
    port = free_port()
    server = procs.tcp_server(tmp_path / "srv", port)
    cli("create", "kv", "warm", "--pid", str(server.pid), "--leave-running")
    # The pages are not needed: take every chunk of the pages files out of the store.
    stored = json.loads(cli("inspect", "kv", "warm", "--json").stdout)
    pages = [f for f in stored["files"] if f["path"].startswith("pages-")]
    assert pages and sum(f["size"] for f in pages) > 0
    doomed = {d for f in pages for blobs in _manifest_blobs(cli.home, f["path"]) for d in blobs}
    chunks = [p for p in (cli.home / "store").rglob("*") if p.is_file() and p.name in doomed]
    assert chunks  # (all-zero chunks are never stored)
    for chunk in chunks:
        chunk.unlink()

    data = json.loads(cli("inspect", "kv", "warm", "--tree", "--files", "--memory",
                          "--json").stdout)
    assert data["target"] == "kv" and data["name"] == "warm"
    [proc] = data["tree"]
    assert proc["pid"] == server.pid and proc["ppid"] == 0
    assert proc["comm"].startswith("python")
    assert [t["tid"] for t in proc["threads"]] == [server.pid]
    sockets = [f for f in data["files"] if f["kind"] == "socket"]
    assert [(s["detail"]["local"], s["detail"]["state"], s["detail"]["protocol"])
            for s in sockets] == [(f"127.0.0.1:{port}", "LISTEN", "tcp")]
    assert sockets[0]["detail"]["send_buffer"] > 0 and sockets[0]["detail"]["receive_buffer"] > 0
    by_fd = {f["fd"]: f for f in data["files"]}
    assert by_fd["2"]["kind"] == "file"  # stderr: an open regular file
    assert by_fd["2"]["detail"]["path"] == str(server.stderr_path)
    assert by_fd["cwd"]["name"] == str(server.workdir)
    [memory] = data["memory"]
    assert memory["pid"] == server.pid and memory["pages_file"] == pages[0]["path"]
    assert memory["dumped_bytes"] == sum(f["size"] for f in pages)
    assert memory["mapped_bytes"] >= memory["dumped_bytes"] > 0
    names = {m["name"] for m in memory["mappings"]}
    assert any(n.endswith(("libc.so.6",)) for n in names), names

    text = cli("inspect", "kv", "warm", "--tree", "--files", "--memory").stdout
    assert f"{server.pid}" in text and proc["comm"] in text
    assert f"tcp 127.0.0.1:{port} LISTEN (send buffer " in text
    assert str(server.stderr_path) in text
    assert f"PID {server.pid}: {len(memory['mappings'])} mappings" in text
    # A restore does need the pages: the missing chunks are reported.
    assert cli("restore", "kv", "warm", check=False).returncode == 7


def _manifest_blobs(home: Path, path: str) -> list[list[str]]:
    """The chunk digests of ``path`` in every manifest of the store (read behind cryostash)."""
    found = []
    for manifest in (home / "store").rglob("manifest.json"):
        for f in json.loads(manifest.read_text())["files"]:
            if f["path"] == path:
                found.append([digest for digest, _ in f["chunks"]])
    return found


def test_diff_of_two_counter_checkpoints_is_memory_only(
    cli: Host, procs: ProcessTracker, tmp_path: Path
) -> None:
    proc = procs.counter(tmp_path / "p")
    assert proc.counter_path is not None
    cli("create", "counter", "one", "--pid", str(proc.pid), "--leave-running")
    seen = read_counter(proc.counter_path)
    wait_until(lambda: read_counter(proc.counter_path) > seen + 3, 10, "the counter to go on")
    cli("create", "counter", "two", "--pid", str(proc.pid), "--leave-running")

    diff = json.loads(cli("diff", "counter", "one", "two", "--json").stdout)
    assert diff["changed"] == ["memory"], diff
    for section in ("processes", "files", "sockets"):
        assert diff[section] == {"added": [], "removed": [], "changed": []}
    memory = diff["memory"]
    assert 0 < memory["bytes_differ"] <= memory["bytes_b"]
    [row] = memory["processes"]
    assert row["pid"] == proc.pid and row["bytes_differ"] == memory["bytes_differ"]

    text = cli("diff", "counter", "one", "two").stdout
    assert "processes: unchanged\nfiles: unchanged\nsockets: unchanged\n" in text
    assert f"memory: {memory['bytes_differ']} bytes differ" in text

    same = json.loads(cli("diff", "counter", "one", "one", "--json").stdout)
    assert same["changed"] == [] and same["memory"]["bytes_differ"] == 0
    assert "memory: unchanged" in cli("diff", "counter", "two", "two").stdout


def _image(magic: int, *entries: bytes) -> bytes:
    return struct.pack("<II", COMMON, magic) + b"".join(
        struct.pack("<I", len(e)) + e for e in entries
    )


@pytest.mark.parametrize(
    ("case", "data"),
    [
        ("not an image", b"this is no CRIU image at all"),
        ("unknown magic", struct.pack("<II", COMMON, 0x12345678) + b"\0" * 16),
        ("truncated entry", _image(PSTREE, b"\x08")[:-1] + struct.pack("<I", 1000) + b"\x08"),
        ("bad protobuf", _image(PSTREE, b"\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff")),
        ("empty", b""),
    ],
)
def test_a_malformed_image_is_an_integrity_error_naming_it(
    tmp_path: Path, case: str, data: bytes
) -> None:
    (tmp_path / "pstree.img").write_bytes(data)
    with pytest.raises(IntegrityError, match=r"pstree\.img"):
        read_contents(tmp_path)


def test_a_missing_image_is_named(tmp_path: Path) -> None:
    # a valid pstree naming PID 7 (field 1, varint), without core-7.img beside it
    (tmp_path / "pstree.img").write_bytes(_image(PSTREE, b"\x08\x07"))
    with pytest.raises(IntegrityError, match=r"core-7\.img"):
        read_contents(tmp_path)


def test_a_stored_malformed_image_is_reported_by_the_cli(
    setup: Setup, tmp_path: Path
) -> None:
    write_tree(tmp_path / "img", {"pstree.img": _image(PSTREE, b"\xff" * 11), "pages-1.img": b""})
    with setup.manager(FakeManager) as mgr:
        mgr.create("app", "bad", locator=str(tmp_path / "img"))
        with pytest.raises(IntegrityError, match=r"CRIU image pstree\.img is malformed"):
            inspect_contents(mgr.repository, ContentsRequest("app", "bad", tree=True))
    env = setup.cli_env()
    done = run(["inspect", "app", "bad", "--tree"], env, check=False)
    assert done.returncode == 7, done.stderr
    assert "pstree.img is malformed" in done.stderr and "Traceback" not in done.stderr


def test_without_pycriu_the_error_names_the_provisioning_command(tmp_path: Path) -> None:
    code = (
        "import sys\n"
        "from pathlib import Path\n"
        "import cryostash.engines.criu_reader as r\n"
        f"r.default_prefix = lambda: Path({str(tmp_path)!r})\n"
        "sys.path = [p for p in sys.path if 'pycriu' not in p]\n"
        "try:\n"
        "    r.load_image(Path('pstree.img'))\n"
        "except Exception as exc:\n"
        "    print(type(exc).__name__, exc)\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=60, check=True)
    assert done.stdout.startswith("EngineError")
    assert "python -m cryostash.install.criu" in done.stdout


def test_a_tree_with_a_zombie_and_a_stopped_child_is_inspected_and_diffed(
    cli: Host, procs: ProcessTracker, tmp_path: Path
) -> None:
    """Like checkpointctl's ``piggie --zombie``: a zombie has a core image and nothing
    else (no ids, mm, pagemap); it is shown as Dead, the stopped child as Stopped."""
    tree = procs.zombie_tree(tmp_path / "z")
    parent = tree.proc
    assert parent.counter_path is not None
    cli("create", "zombies", "one", "--pid", str(parent.pid), "--leave-running")
    seen = read_counter(parent.counter_path)
    wait_until(lambda: read_counter(parent.counter_path) > seen + 3, 10, "the parent to count")
    cli("create", "zombies", "two", "--pid", str(parent.pid), "--leave-running")

    data = json.loads(cli("inspect", "zombies", "one", "--tree", "--files", "--memory",
                          "--json").stdout)
    states = {p["pid"]: p["state"] for p in data["tree"]}
    assert states == {parent.pid: "Alive", tree.zombie: "Dead", tree.stopped: "Stopped"}
    assert {f["pid"] for f in data["files"]} == {parent.pid, tree.stopped}
    memory = {m["pid"]: m for m in data["memory"]}
    assert set(memory) == {parent.pid, tree.stopped}
    assert memory[parent.pid]["dumped_bytes"] > 0

    text = cli("inspect", "zombies", "one", "--tree").stdout
    assert f"{tree.zombie} (Dead)" in text and f"{tree.stopped} (Stopped)" in text
    assert f"{parent.pid} (Alive)" not in text  # like checkpointctl: only the unusual states

    assert "PATH=" not in cli("inspect", "zombies", "one", "--tree", "--cmdline").stdout
    full = json.loads(cli("inspect", "zombies", "one", "--cmdline", "--env", "--json").stdout)
    by_pid = {p["pid"]: p for p in full["tree"]}
    argv = [sys.executable, str(ZOMBIE_PROG), str(parent.counter_path)]
    assert by_pid[parent.pid]["cmdline"] == by_pid[tree.stopped]["cmdline"] == argv
    assert f"PATH={os.environ['PATH']}" in by_pid[parent.pid]["env"]
    assert by_pid[tree.zombie]["cmdline"] == by_pid[tree.zombie]["env"] == []
    assert "env PATH=" in cli("inspect", "zombies", "one", "--env").stdout

    diff = json.loads(cli("diff", "zombies", "one", "two", "--json").stdout)
    assert diff["changed"] == ["memory"], diff
    assert diff["memory"]["bytes_differ"] > 0
    assert "processes: unchanged" in cli("diff", "zombies", "one", "two").stdout
