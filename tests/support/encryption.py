"""Encrypted stores through the CLI (``test_encryption_cli.py``, ``test_writeonly_cli.py``):
a real process holding a random 64-byte marker (``tests/support/marker_prog.py``), where
the marker is found in a store, a host's environment with a passphrase, and a store's
whole state.
"""

from __future__ import annotations

import json
import os
import secrets
import signal
import sys
from pathlib import Path

from tests.support import cli
from tests.support.processes import Proc, ProcessTracker, start_detached, wait_until
from tests.support.setups import Setup
from tests.support.stores import RawStore

MARKER_PROG = Path(__file__).resolve().parent / "marker_prog.py"
PASS_A = "correct horse battery staple"
PASS_B = "a second, independent passphrase"


def start_marker(procs: ProcessTracker, workdir: Path) -> tuple[Proc, bytes, Path]:
    """A detached marker process (tracked): (it, its marker, its status file)."""
    marker = secrets.token_bytes(64)
    workdir.mkdir(parents=True, exist_ok=True)
    (workdir / "marker").write_text(marker.hex())
    status = workdir / "status"
    proc = start_detached(
        [sys.executable, str(MARKER_PROG), str(workdir / "marker"), str(status)],
        workdir, "marker",
    )
    procs.track(proc.pid)
    wait_until(lambda: status.exists() and status.read_text() == "ready", 30, "marker ready")
    return proc, marker, status


def held_marker(pid: int, status: Path) -> bytes:
    """Ask the (restored) process for the marker it holds."""
    status.unlink(missing_ok=True)
    os.kill(pid, signal.SIGUSR1)
    text = wait_until(lambda: status.read_text() if status.exists() else "", 30, "marker told")
    return bytes.fromhex(text)


def found_in(raw: RawStore, marker: bytes) -> list[str]:
    """Objects holding the marker: as stored, as its zstd frame, or once decoded."""
    import zstandard

    from cryostash.store import codec

    frame = zstandard.ZstdCompressor(level=3).compress(marker)[6:]  # the frame's body
    hits = []
    for rel in raw.files():
        data = raw.get(rel)
        plain = b""
        if data[:1] in (b"\x00", b"\x01"):
            try:
                plain = bytes(codec.decode(data, max_size=64 << 20))
            except Exception:
                plain = b""
        if marker in data or frame in data or marker in plain:
            hits.append(rel)
    return hits


def env_for(setup: Setup, criu_path: str, passphrase: str | None, **extra: str) -> dict[str, str]:
    """``setup``'s host environment with ``passphrase`` (None: none) and ``extra``."""
    env = setup.cli_env(criu_path)
    if passphrase is not None:
        env["CRYOSTASH_PASSWORD"] = passphrase
    env.update(extra)
    return env


def store_state(setup: Setup) -> tuple[dict[str, bytes], str]:
    """Every object of the store (name -> bytes) and every catalog row but the events
    (as JSON): what a refused verb must leave as it was."""
    raw = setup.raw
    rows = cli.catalog_rows(setup.catalog_url)
    rows.pop("events", None)
    return {r: raw.get(r) for r in raw.files()}, json.dumps(rows, default=str, sort_keys=True)
