"""A pattern process (``tests/support/pattern_prog.py``) dumped for a lazy restore, and
what the lazy restore reported: :func:`start_pattern` (PID, status file, memory hash),
:func:`read_status`, :func:`dumped_to_s3` (a 128 MiB pattern dumped to a new S3 bucket on
moto, the chunk cache emptied), :func:`eager_bytes` (what a lazy restore fetches before
the memory pages), :func:`events` and :func:`lazy_events` (``cryostash events``)."""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from tests.support import cli
from tests.support.processes import ProcessTracker, start_detached, wait_until
from tests.support.stores import MotoServer

PATTERN_PROG = Path(__file__).resolve().parent / "pattern_prog.py"


def read_status(status: Path) -> tuple[int, str] | None:
    try:
        count, digest = status.read_text().split()
    except (FileNotFoundError, ValueError):
        return None
    return int(count), digest


def start_pattern(procs: ProcessTracker, workdir: Path, size_mib: int) -> tuple[int, Path, str]:
    """A pattern process: (PID, status file, hash of its memory)."""
    status = workdir / "status"
    proc = start_detached(
        [sys.executable, str(PATTERN_PROG), str(size_mib), "11", str(status)], workdir, "pat"
    )
    procs.track(proc.pid)
    count, digest = wait_until(lambda: read_status(status), 120, "the pattern in memory")
    assert count == 0
    return proc.pid, status, digest


def events(env: dict[str, str]) -> list[dict[str, Any]]:
    found = json.loads(cli.run(["events", "--json"], env).stdout)
    assert isinstance(found, list)
    return found


def lazy_events(env: dict[str, str]) -> list[dict[str, Any]]:
    return [e for e in events(env) if e["action"] != "checkpoint" and e["detail"].get("lazy")]


def eager_bytes(env: dict[str, str]) -> int:
    """Plain size of every file of checkpoint pat/one but the memory pages."""
    shown = json.loads(cli.run(["inspect", "pat", "one", "--json"], env).stdout)
    return sum(f["size"] for f in shown["files"] if not f["path"].startswith("pages-"))


def dumped_to_s3(
    procs: ProcessTracker, tmp_path: Path, criu: str, moto_server: MotoServer
) -> tuple[dict[str, str], str, int, tuple[str, int]]:
    """A 128 MiB pattern process (64 MiB random) dumped as pat/one to a new S3 bucket,
    the chunk cache emptied: (env, store URL, PID, moto's (host, port) for a proxy)."""
    store_url = f"s3://{moto_server.make_bucket()}/cs"
    env = cli.host_env(tmp_path, criu=criu, CRYOSTASH_STORE=store_url, **moto_server.env())
    pid, _status, _digest = start_pattern(procs, tmp_path / "p", 128)
    cli.run(["create", "pat", "one", "--pid", str(pid)], env)
    shutil.rmtree(tmp_path / "cache", ignore_errors=True)
    upstream = urlsplit(moto_server.endpoint)
    assert upstream.hostname is not None and upstream.port is not None
    return env, store_url, pid, (upstream.hostname, upstream.port)
