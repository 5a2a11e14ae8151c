"""Chunking, compression, dedup and the chunk cache end to end: the real ``cryostash`` CLI
and real CRIU, on a process holding 24 MiB (half random, half zeros) that rewrites 5% of
it on SIGUSR1 (``tests/support/memory_prog.py``). Local store and S3 (moto)."""

from __future__ import annotations

import json
import os
import signal
import sys
from pathlib import Path

import pytest

from tests.support import cli
from tests.support.processes import (
    Proc,
    ProcessTracker,
    kill_pid,
    pid_exists,
    start_detached,
    wait_until,
)
from tests.support.stores import MotoServer

MEMORY_PROG = Path(__file__).resolve().parent / "support" / "memory_prog.py"
SIZE_MIB = 24
#: Small chunks: the changed 5% of the memory is many chunks among many unchanged.
CHUNK = "256k"


def start_memory(procs: ProcessTracker, workdir: Path) -> tuple[Proc, Path]:
    status = workdir / "status"
    proc = start_detached(
        [sys.executable, str(MEMORY_PROG), str(SIZE_MIB), str(status)], workdir, "memory"
    )
    procs.track(proc.pid)
    wait_for_status(status, 0)
    return proc, status


def wait_for_status(status: Path, value: int) -> None:
    def ready() -> bool:
        try:
            return status.read_text() == str(value)
        except FileNotFoundError:
            return False

    wait_until(ready, 60, f"{status} to say {value}")


def rewrite_5_percent(proc: Proc, status: Path, expect: int) -> None:
    os.kill(proc.pid, signal.SIGUSR1)
    wait_for_status(status, expect)


def create(env: dict[str, str], name: str, pid: int, *flags: str) -> dict[str, object]:
    out = cli.run(["create", "mem", name, "--pid", str(pid), "--json", *flags], env)
    stats = json.loads(out.stdout)["stats"]
    assert isinstance(stats, dict)
    return stats


def test_local_round_trip_and_second_checkpoint_uploads_only_changed_chunks(
    procs: ProcessTracker, tmp_path: Path, criu_path: str
) -> None:
    env = cli.host_env(tmp_path, criu=criu_path, chunk_size=CHUNK)
    proc, status = start_memory(procs, tmp_path / "p")
    first = create(env, "one", proc.pid, "--leave-running")
    for key in ("frozen_s", "dump_s", "upload_s", "bytes_scanned", "bytes_new",
                "bytes_uploaded", "bytes_stored", "chunks_total", "chunks_new"):
        assert key in first, key
    assert first["frozen_s"] is not None
    scanned = int(first["bytes_scanned"])  # type: ignore[call-overload]
    assert scanned > SIZE_MIB << 20
    # Zeros dedup into one chunk, random pages do not compress: about half is stored.
    assert int(first["bytes_stored"]) < 0.7 * scanned  # type: ignore[call-overload]

    rewrite_5_percent(proc, status, 1)
    second = create(env, "two", proc.pid, "--leave-running")
    changed = (SIZE_MIB << 20) // 20
    new, uploaded = int(second["bytes_new"]), int(second["bytes_uploaded"])  # type: ignore[call-overload]
    assert changed <= new <= changed + 6 * (1 << 20), second
    assert uploaded <= 0.3 * int(first["bytes_uploaded"]), (first, second)  # type: ignore[call-overload]
    # New chunks: those of the rewritten region (chunks are at least 64 KiB with 256k),
    # plus at most one per small CRIU file (registers, timers... change at every dump).
    small_files = int(second["files"]) - 1  # type: ignore[call-overload]
    assert int(second["chunks_new"]) <= changed // (64 << 10) + 4 + small_files  # type: ignore[call-overload]
    assert int(second["chunks_known"]) > 0  # type: ignore[call-overload]

    shown = json.loads(cli.run(["inspect", "mem", "two", "--json"], env).stdout)
    assert shown["stats"]["bytes_new"] == new

    kill_pid(proc.pid)
    done = cli.run(["restore", "mem", "two", "--json", "--print-stats"], env)
    restored = json.loads(done.stdout)
    procs.track(restored["pid"])
    assert restored["bytes_restored"] == int(second["bytes_scanned"])  # type: ignore[call-overload]
    assert restored["cache"] is False  # a local store is not cached
    assert "download:" in done.stderr and "restore:" in done.stderr
    # The restored process has its memory: it goes on from one rewrite done to two.
    os.kill(restored["pid"], signal.SIGUSR1)
    wait_for_status(status, 2)
    events = json.loads(cli.run(["events", "mem", "--json"], env).stdout)
    restore_event = [e for e in events if e["action"] == "restore"][-1]
    assert restore_event["detail"]["bytes_restored"] == restored["bytes_restored"]
    shown = json.loads(cli.run(["inspect", "mem", "two", "--json"], env).stdout)
    assert shown["last_restore"]["detail"]["download_s"] == restored["download_s"]
    text = cli.run(["inspect", "mem", "two"], env).stdout
    assert "last restore:" in text and "bytes_new:" in text


@pytest.mark.parametrize("compression", ["3", "none"])
def test_s3_restore_takes_part_of_its_chunks_from_the_cache(
    procs: ProcessTracker,
    tmp_path: Path,
    criu_path: str,
    moto_server: MotoServer,
    compression: str,
) -> None:
    bucket = moto_server.make_bucket()
    env = cli.host_env(
        tmp_path, criu=criu_path, chunk_size=CHUNK, CRYOSTASH_STORE=f"s3://{bucket}/cs",
        CRYOSTASH_COMPRESSION=compression, **moto_server.env(),
    )
    proc, status = start_memory(procs, tmp_path / "p")
    stats = create(env, "one", proc.pid)
    assert int(stats["chunks_cached"]) == int(stats["chunks_new"]) > 0  # type: ignore[call-overload]
    wait_until(lambda: not pid_exists(proc.pid), 10, "dumped process to go")
    cache = tmp_path / "cache"
    entries = sorted(p for p in cache.rglob("*") if p.is_file())
    for path in entries[::2]:  # drop half of the cache: those are downloaded
        path.unlink()
    restored = json.loads(cli.run(["restore", "mem", "one", "--json"], env).stdout)
    procs.track(restored["pid"])
    assert restored["cache"] is True
    dropped, kept = len(entries[::2]), len(entries) - len(entries[::2])
    hits, downloads = restored["chunks_from_cache"], restored["chunks_downloaded"]
    # All-zero chunks (one or two distinct sizes) are cached by create but never fetched.
    assert 0 < hits <= kept and 0 < downloads <= dropped
    assert hits + downloads >= len(entries) - 2
    assert restored["bytes_downloaded"] > 0 and restored["bytes_from_cache"] > 0
    os.kill(restored["pid"], signal.SIGUSR1)
    wait_for_status(status, 1)
