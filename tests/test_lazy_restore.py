"""``cryostash restore --lazy``: real CRIU lazy restore (userfaultfd, ``criu lazy-pages``)
of a real process holding a known pattern (``tests/support/pattern_prog.py``), its pages
served from the chunk store through cryostash's FUSE view; from a local store and from S3
(moto). After completion the process hashes its memory on SIGUSR1: the hash must be the
one it had before the dump. A TCP server (``tests/support/tcp_pattern_server.py``) keeps
answering an established connection across a lazy restore. Fault cases: a chunk of the
memory pages corrupted in the store, or the S3 store gone (``tests/support/cutoff_proxy.py``)
while pages are missing -> the process is killed, a ``restore-failed`` event names the
chunk (and the unreachable store). Every case checks that no helper process, FUSE mount or
scratch folder is left."""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import signal
import socket
import sys
from pathlib import Path
from typing import Any

import pytest

from cryostash import CheckpointManager, Settings
from tests.support import cli
from tests.support.cutoff_proxy import CutoffProxy
from tests.support.lazy_s3 import (
    dumped_to_s3,
    eager_bytes,
    lazy_events,
    read_status,
    start_pattern,
)
from tests.support.pattern_prog import fill
from tests.support.processes import ProcessTracker, is_dead, start_detached, wait_until
from tests.support.requirements import missing
from tests.support.stores import MotoServer, RawStore

pytestmark = pytest.mark.criu


def fuse_mounts() -> list[str]:
    return [line for line in Path("/proc/mounts").read_text().splitlines() if "cryostash" in line]


def assert_nothing_left(tmp_path: Path, helper_pid: int) -> None:
    wait_until(lambda: is_dead(helper_pid), 30, "the lazy-restore helper to exit")
    assert not [m for m in fuse_mounts() if str(tmp_path) in m]
    scratch = tmp_path / "scratch"
    assert not scratch.exists() or not list(scratch.iterdir())


def lazy_round_trip(
    procs: ProcessTracker, tmp_path: Path, env: dict[str, str], size_mib: int
) -> dict[str, Any]:
    """Dump a pattern process, restore it lazily with an empty chunk cache, check its
    memory; the completion event."""
    pid, status, digest = start_pattern(procs, tmp_path / "p", size_mib)
    cli.run(["create", "pat", "one", "--pid", str(pid)], env)
    shutil.rmtree(tmp_path / "cache", ignore_errors=True)
    out = json.loads(cli.run(["restore", "pat", "one", "--lazy", "--json"], env).stdout)
    restored = procs.track(int(out["pid"]))
    assert restored == pid
    assert out["lazy"] is True and out["time_to_running_s"] > 0
    assert not is_dead(restored)  # it runs before all its memory is there
    done = wait_until(
        lambda: [e for e in lazy_events(env) if e["action"] == "restore"], 180,
        "the lazy restore to complete",
    )
    detail = done[0]["detail"]
    assert detail["pid"] == pid
    assert detail["pages_total"] > 0
    assert detail["pages_faulted"] + detail["pages_streamed"] == detail["pages_total"]
    assert detail["time_to_complete_s"] >= detail["time_to_running_s"]
    os.kill(restored, signal.SIGUSR1)
    _count, after = wait_until(
        lambda: (s := read_status(status)) and s[0] == 1 and s, 120, "the memory check"
    )
    assert after == digest, "the restored memory differs from the dumped memory"
    assert_nothing_left(tmp_path, int(out["helper_pid"]))
    return dict(detail)


@pytest.mark.slow
def test_lazy_restore_256_mib_from_local_store(
    procs: ProcessTracker, tmp_path: Path, lazy_criu: str
) -> None:
    detail = lazy_round_trip(procs, tmp_path, cli.host_env(tmp_path, criu=lazy_criu), 256)
    assert detail["bytes_from_store"] > 0


@pytest.mark.slow
def test_lazy_restore_256_mib_from_s3(
    procs: ProcessTracker, tmp_path: Path, lazy_criu: str, moto_server: MotoServer
) -> None:
    bucket = moto_server.make_bucket()
    env = cli.host_env(
        tmp_path, criu=lazy_criu, CRYOSTASH_STORE=f"s3://{bucket}/cs", **moto_server.env()
    )
    detail = lazy_round_trip(procs, tmp_path, env, 256)
    assert detail["bytes_from_store"] > 0 and detail["bytes_from_cache"] == 0


def test_container_engine_refused_before_anything_starts(
    procs: ProcessTracker, tmp_path: Path, lazy_criu: str
) -> None:
    env = cli.host_env(tmp_path, criu=lazy_criu)
    pid, _status, _digest = start_pattern(procs, tmp_path / "p", 8)
    cli.run(["create", "pat", "one", "--pid", str(pid), "--leave-running"], env)
    for engine in ("runc", "podman", "docker"):
        done = cli.run(["restore", "pat", "one", "--lazy", "--engine", engine], env, check=False)
        assert done.returncode == 2, done.stderr
        assert f"lazy restore is not supported by {engine}" in done.stderr
    assert not (tmp_path / "scratch").exists() or not list((tmp_path / "scratch").iterdir())
    assert not lazy_events(env)


def pages_chunk(tmp_path: Path, env: dict[str, str]) -> str:
    """A non-zero chunk of ``pages-*.img`` a quarter into the file (the random half of
    the pattern: memory the dump marked lazy)."""
    settings = Settings(
        store_url=env["CRYOSTASH_STORE"], catalog_url=env["CRYOSTASH_CATALOG"],
        scratch_dir=tmp_path / "scratch", host="host-a",
    )
    with CheckpointManager(settings) as mgr:
        manifest = mgr.inspect("pat", "one").manifest
        store = mgr.store()
        entry = max(
            (f for f in manifest.files if f.path.startswith("pages-")), key=lambda f: f.size
        )
        offset = 0
        for digest, size in zip(entry.blobs, entry.chunk_sizes, strict=True):
            if offset + size > entry.size // 4 and digest != store.sealing.zero_name(size):
                return digest
            offset += size
    raise AssertionError("no chunk found")


def test_corrupt_page_chunk_kills_the_process_and_says_which(
    procs: ProcessTracker, tmp_path: Path, lazy_criu: str
) -> None:
    env = cli.host_env(tmp_path, criu=lazy_criu)
    pid, _status, _digest = start_pattern(procs, tmp_path / "p", 64)
    cli.run(["create", "pat", "one", "--pid", str(pid)], env)
    digest = pages_chunk(tmp_path, env)
    from fsspec.implementations.local import LocalFileSystem

    RawStore(LocalFileSystem(), str(tmp_path / "store")).flip_byte(RawStore.blob(digest), 40)
    done = cli.run(["restore", "pat", "one", "--lazy", "--json"], env, check=False)
    if done.returncode == 0:  # the process ran; the bad chunk was needed afterwards
        out = json.loads(done.stdout)
        procs.track(int(out["pid"]))
        wait_until(lambda: is_dead(pid), 60, "the restored process to be killed")
        helper = int(out["helper_pid"])
    else:  # the bad chunk was needed before the restore returned: killed all the same
        assert digest in done.stderr, done.stderr
        helper = 0
    failed = wait_until(
        lambda: [e for e in lazy_events(env) if e["action"] == "restore-failed"], 60,
        "the restore-failed event",
    )
    detail = failed[0]["detail"]
    assert digest in detail["error"] and "corrupt" in detail["error"]
    assert not [e for e in lazy_events(env) if e["action"] == "restore"]
    assert is_dead(pid)
    if helper:
        assert_nothing_left(tmp_path, helper)
    else:
        wait_until(lambda: not list((tmp_path / "scratch").iterdir()), 30, "scratch removed")
        assert not [m for m in fuse_mounts() if str(tmp_path) in m]


def test_doctor_reports_lazy_restore(tmp_path: Path, lazy_criu: str) -> None:
    done = cli.run(["doctor", "--json"], cli.host_env(tmp_path, criu=lazy_criu), check=False)
    checks = {c["name"]: c for c in json.loads(done.stdout)["checks"]}
    lazy = checks["lazy-restore"]
    assert lazy["ok"] is True and lazy["userfaultfd"] is True and lazy["fuse"] is True
    assert not [m for m in fuse_mounts() if "cryostash-fuse-" in m]


TCP_PATTERN_SERVER = Path(__file__).resolve().parent / "support" / "tcp_pattern_server.py"


def start_pattern_server(procs: ProcessTracker, workdir: Path, size_mib: int) -> tuple[int, int]:
    """A ``tcp_pattern_server.py`` holding ``size_mib`` MiB (seed 11): (PID, port)."""
    port_file = workdir / "port"
    proc = start_detached(
        [sys.executable, str(TCP_PATTERN_SERVER), str(size_mib), "11", str(port_file)],
        workdir, "tcp-pattern",
    )
    procs.track(proc.pid)
    text = wait_until(
        lambda: port_file.read_text() if port_file.exists() else "", 120, "the server to listen"
    )
    return proc.pid, int(text)


def ask(conn: socket.socket, line: str, timeout: float) -> str:
    """Send one request line on ``conn``; its reply line (AssertionError after ``timeout``)."""
    conn.settimeout(timeout)
    conn.sendall(line.encode() + b"\n")
    buf = b""
    while not buf.endswith(b"\n"):
        try:
            chunk = conn.recv(4096)
        except TimeoutError:
            raise AssertionError(f"no reply to {line} within {timeout:g} s") from None
        if not chunk:
            raise AssertionError(f"connection closed before the reply to {line}: {buf!r}")
        buf += chunk
    return buf.decode().rstrip("\n")


@pytest.mark.slow
def test_tcp_server_answers_the_same_connection_across_a_lazy_restore(
    procs: ProcessTracker, tmp_path: Path, lazy_criu: str
) -> None:
    """A server holding 128 MiB answers each ``HASH`` with the SHA-256 of all its memory.
    A client connects and gets the hash; the server is dumped with ``--tcp-established``
    (CRIU locks the connection in the network and closes the server's end silently),
    restored lazily with an empty chunk cache, and the **same** connection gets the same
    hash back: the restored socket carries on the connection, and computing the answer
    faults every page of the process in through the lazy-pages daemon. The restore then
    completes (``restore`` event, ``lazy: true``) and nothing is left behind."""
    if shutil.which("iptables-restore") is None:
        missing("iptables", "CRIU locks established connections with iptables-restore")
    env = cli.host_env(tmp_path, criu=lazy_criu)
    size_mib = 128
    expected = "HASH " + hashlib.sha256(fill(size_mib << 20, 11)).hexdigest()
    pid, port = start_pattern_server(procs, tmp_path / "srv", size_mib)
    with socket.create_connection(("127.0.0.1", port), timeout=10) as conn:
        assert ask(conn, "HASH", 60) == expected
        cli.run(["create", "srv", "one", "--pid", str(pid), "--tcp-established"], env)
        assert is_dead(pid)
        shutil.rmtree(tmp_path / "cache", ignore_errors=True)
        out = json.loads(cli.run(["restore", "srv", "one", "--lazy", "--json"], env).stdout)
        restored = procs.track(int(out["pid"]))
        assert restored == pid and out["lazy"] is True
        assert ask(conn, "HASH", 60) == expected, "the restored server's memory differs"
        assert ask(conn, "PING", 10) == "PONG"
    done = wait_until(
        lambda: [e for e in lazy_events(env) if e["action"] == "restore"], 120,
        "the lazy restore to complete",
    )
    detail = done[0]["detail"]
    assert detail["pid"] == pid and detail["pages_total"] > 0
    assert detail["pages_faulted"] + detail["pages_streamed"] == detail["pages_total"]
    assert detail["bytes_from_store"] > 0
    assert not is_dead(restored)
    assert_nothing_left(tmp_path, int(out["helper_pid"]))


@pytest.mark.slow
@pytest.mark.parametrize(
    "extra", [pytest.param(8 << 20, id="mid-stream"), pytest.param(128 << 10, id="early")]
)
def test_store_unreachable_while_pages_are_missing_kills_the_process_and_says_why(
    procs: ProcessTracker, tmp_path: Path, lazy_criu: str, moto_server: MotoServer, extra: int
) -> None:
    """The S3 store goes away while pages are missing. The restore reaches moto through a
    :class:`CutoffProxy` that, once it has forwarded the eager files plus ``extra`` bytes
    (8 MiB; 128 KiB: less than one chunk of pages) to cryostash, stops listening and drops
    every connection (the endpoint refuses connections from then on): the pattern's 64 MiB
    of random memory cannot all have arrived, whatever the timing. After the store's
    retries (the defaults: a few seconds) the restored process is killed,
    ``restore-failed`` says the store could not be reached and which blob of which file,
    and nothing is left behind.

    Both outcomes of the race between the cut and the command's return are accepted (with
    8 MiB the command usually returns first, with 128 KiB CRIU's own restore usually needs
    the missing chunk): the command returned a PID (that process is then killed), or it
    failed with the same reason, exit 5, and nothing runs."""
    env, store_url, pid, upstream = dumped_to_s3(procs, tmp_path, lazy_criu, moto_server)
    budget = eager_bytes(env) + extra
    with CutoffProxy(upstream, budget) as proxy:
        via_proxy = {**env, "AWS_ENDPOINT_URL": proxy.endpoint}
        done = cli.run(["restore", "pat", "one", "--lazy", "--json"], via_proxy, check=False)
        if done.returncode == 0:  # it ran; the store went away while pages were missing
            out = json.loads(done.stdout)
            assert procs.track(int(out["pid"])) == pid
            wait_until(lambda: is_dead(pid), 120, "the restored process to be killed")
            helper = int(out["helper_pid"])
        else:  # the store went away during CRIU's restore: it failed, nothing runs
            assert done.returncode == 5, done.stderr
            assert "cannot connect to the endpoint" in done.stderr, done.stderr
            assert store_url in done.stderr, done.stderr
            helper = 0
        failed = wait_until(
            lambda: [e for e in lazy_events(env) if e["action"] == "restore-failed"], 120,
            "the restore-failed event",
        )
        assert proxy.cut_done.is_set()
        assert proxy.forwarded == budget
    error = failed[0]["detail"]["error"]
    assert re.search(r"blob [0-9a-f]{64} of file pages-\d+\.img could not be fetched", error)
    assert f"in store {store_url}: cannot connect to the endpoint" in error, error
    if helper:
        assert failed[0]["detail"]["killed"] is True and failed[0]["detail"]["pid"] == pid
    assert not [e for e in lazy_events(env) if e["action"] == "restore"]
    assert re.search(r"restore-failed\s+pat\s+one", cli.run(["events"], env).stdout)
    assert is_dead(pid)
    if helper:
        assert_nothing_left(tmp_path, helper)
    else:
        wait_until(lambda: not list((tmp_path / "scratch").iterdir()), 30, "scratch removed")
        assert not [m for m in fuse_mounts() if str(tmp_path) in m]
