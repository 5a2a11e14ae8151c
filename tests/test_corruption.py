"""Damaged checkpoints, end to end with real CRIU, through the CLI.

One counter process is checkpointed once into each shape (local+SQLite, S3+PostgreSQL)
and then killed, so its PID is free: a restore that went ahead would bring it back
under that PID. Each test damages one object (a flipped byte, a truncated, deleted or
emptied blob, a garbage or truncated manifest), then checks that ``verify --read-data``
reports it (exit 7, naming file and blob) and that ``restore`` refuses it (exit 7,
naming file and blob or the manifest) without starting any process and without
leaving scratch behind; the object is put back afterwards. A last test per shape
proves the repaired checkpoint verifies and restores.
"""

from __future__ import annotations

import json
import subprocess
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from cryostash.store import Manifest
from cryostash.transfer.chunking import zero_digest
from tests.support import postgres
from tests.support.cli import run as run_cli
from tests.support.processes import (
    ProcessTracker,
    kill_pid,
    pid_exists,
    read_counter,
    wait_until,
)
from tests.support.setups import SHAPES, Setup, make_setup
from tests.support.stores import RawStore

pytestmark = [pytest.mark.criu, pytest.mark.slow]


@dataclass
class Golden:
    """A committed CRIU checkpoint ``app/cp`` of a counter that is gone now."""

    setup: Setup
    root_pid: int
    counter_file: Path
    manifest: Manifest

    @property
    def victim(self) -> tuple[str, str]:
        """(file, blob): the first blob of the largest file of the image that restore
        must read (all-zero chunks are rebuilt without reading the store)."""
        for entry in sorted(self.manifest.files, key=lambda f: -f.size):
            for digest, size in zip(entry.blobs, entry.chunk_sizes, strict=True):
                if digest != zero_digest(size):
                    return entry.path, digest
        raise AssertionError("the image has no chunk that is not all zeros")


def cli(setup: Setup, criu: str, *args: str) -> subprocess.CompletedProcess[str]:
    """``cryostash ARGS`` on ``setup`` (not checked: the tests look at failures)."""
    return run_cli(list(args), setup.cli_env(criu), check=False)


@pytest.fixture(scope="module")
def goldens(
    criu_path: str,
    tmp_path_factory: pytest.TempPathFactory,
    moto_endpoint: dict[str, object],
    pg_server: postgres.PostgresServer,
) -> Iterator[dict[str, Golden]]:
    tracker = ProcessTracker()
    made: dict[str, Golden] = {}
    setups: list[Setup] = []
    try:
        proc = tracker.counter(tmp_path_factory.mktemp("counter"))
        assert proc.counter_path is not None
        for shape in SHAPES:
            setup = make_setup(
                shape, tmp_path_factory.mktemp(shape), moto=dict(moto_endpoint), pg=pg_server
            )
            setups.append(setup)
            done = cli(setup, criu_path, "create", "app", "cp", "--pid", str(proc.pid),
                       "--leave-running")
            assert done.returncode == 0, done.stderr
            raw = setup.raw
            manifest = Manifest.from_bytes(raw.get(raw.manifest("app", "cp")))
            made[shape] = Golden(setup, proc.pid, proc.counter_path, manifest)
        kill_pid(proc.pid)  # gone and reaped: its PID is free for a restore
        yield made
    finally:
        tracker.kill_all()
        for setup in setups:
            setup.cleanup()


Damage = Callable[[RawStore, str, bytes], None]


def _flip(raw: RawStore, path: str, data: bytes) -> None:
    raw.flip_byte(path, offset=len(data) // 2)


def _truncate(raw: RawStore, path: str, data: bytes) -> None:
    raw.put(path, data[: len(data) // 2])


def _delete(raw: RawStore, path: str, data: bytes) -> None:
    raw.remove(path)


def _zero(raw: RawStore, path: str, data: bytes) -> None:
    raw.put(path, b"")


def _garbage(raw: RawStore, path: str, data: bytes) -> None:
    raw.put(path, b"\x00\x01 this is not a manifest \xff")


#: case, damage, object (blob or manifest), problem kinds verify may report
CASES: list[tuple[str, Damage, str, set[str]]] = [
    ("flipped-bit", _flip, "blob", {"blob-corrupt"}),
    ("truncated-blob", _truncate, "blob", {"blob-corrupt", "blob-size"}),
    ("deleted-blob", _delete, "blob", {"blob-missing"}),
    ("zero-byte-blob", _zero, "blob", {"blob-corrupt", "blob-size"}),
    ("garbage-manifest", _garbage, "manifest", {"manifest-corrupt"}),
    ("truncated-manifest", _truncate, "manifest", {"manifest-corrupt"}),
]


@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize(("case", "damage", "what", "kinds"), CASES, ids=[c[0] for c in CASES])
def test_damage_is_reported_by_verify_and_refused_by_restore(
    goldens: dict[str, Golden],
    criu_path: str,
    shape: str,
    case: str,
    damage: Damage,
    what: str,
    kinds: set[str],
) -> None:
    golden = goldens[shape]
    setup, raw = golden.setup, golden.setup.raw
    file, blob = golden.victim
    path = raw.blob(blob) if what == "blob" else raw.manifest("app", "cp")
    original = raw.get(path)
    try:
        damage(raw, path, original)
        checked = cli(setup, criu_path, "verify", "--read-data", "--json")
        assert checked.returncode == 7, checked.stderr
        problems = json.loads(checked.stdout)["problems"]
        assert problems, "verify found nothing"
        for problem in problems:
            assert (problem["target"], problem["name"]) == ("app", "cp")
            assert problem["kind"] in kinds, problem
            if what == "blob":
                assert (problem["file"], problem["blob"]) == (file, blob)

        restored = cli(setup, criu_path, "restore", "app", "cp")
        assert restored.returncode == 7, (restored.returncode, restored.stderr)
        if what == "blob":
            assert f"blob {blob} of file {file}" in restored.stderr, restored.stderr
        else:
            assert "manifest of app/cp" in restored.stderr, restored.stderr
        started = pid_exists(golden.root_pid)
        if started:
            kill_pid(golden.root_pid)  # do not let one failure spoil the next tests
        assert not started, "a process was started from damaged data"
        assert not setup.scratch.exists() or list(setup.scratch.iterdir()) == []
        events = json.loads(cli(setup, criu_path, "events", "--json").stdout)
        assert "restore" not in [e["action"] for e in events]
    finally:
        raw.put(path, original)


@pytest.mark.parametrize("shape", SHAPES)
def test_the_repaired_checkpoint_verifies_and_restores(
    goldens: dict[str, Golden], criu_path: str, shape: str
) -> None:
    golden = goldens[shape]
    setup = golden.setup
    assert cli(setup, criu_path, "verify", "--read-data").returncode == 0
    restored = cli(setup, criu_path, "restore", "app", "cp", "--json")
    assert restored.returncode == 0, restored.stderr
    pid = json.loads(restored.stdout)["pid"]
    tracker = ProcessTracker()
    tracker.track(pid)
    try:
        assert pid == golden.root_pid
        at = read_counter(golden.counter_file)
        wait_until(lambda: read_counter(golden.counter_file) > at, 10, "the counter to go on")
    finally:
        kill_pid(pid)  # gone and reaped: the next test needs the PID free again
        tracker.kill_all()
