"""Live migration's final step against the last pre-copy's kept image (real CRIU, the
library migration to this host): unchanged chunks are compared, not re-hashed; the moved
process has exactly its memory; the kept image never outlives the migration, whether it
succeeds, its final create fails or it stops before the final dump.

The process (``tests/support/rewrite_prog.py``) holds random memory; a hook rewrites 5%
of it right after the pre-copy is committed, so the final dump differs from the kept one
in one region, and the process publishes the SHA-256 of its memory on demand.
"""

from __future__ import annotations

import os
import signal
import sys
from collections.abc import Callable, Iterator
from dataclasses import replace
from pathlib import Path

import pytest

from cryostash import CheckpointManager, Settings, hooks
from cryostash.cli.cmd_migrate import format_report
from cryostash.config.transfer import TransferSettings
from cryostash.errors import StorageError, UsageError
from cryostash.operations.destination_local import LocalDestination
from cryostash.operations.migrate import MigrateRequest, migrate
from tests.support.migration import T, start_child, this_host_settings
from tests.support.processes import ProcessTracker, pid_exists, wait_until

REWRITE_PROG = Path(__file__).resolve().parent / "support" / "rewrite_prog.py"
SIZE_MIB = 24


def status(path: Path) -> tuple[int, str] | None:
    try:
        count, digest = path.read_text().split()
    except (FileNotFoundError, ValueError):
        return None
    return int(count), digest


class Rewriter:
    """The running process: its PID and what it publishes."""

    def __init__(self, procs: ProcessTracker, workdir: Path) -> None:
        self.path = workdir / "status"
        argv = [sys.executable, str(REWRITE_PROG), str(SIZE_MIB), str(self.path)]
        self.pid = start_child(procs, argv, workdir)  # reaped at once
        self.count = 0
        self.digest = wait_until(lambda: self._at(0), 60, "the memory to be in place")

    def _at(self, count: int) -> str | None:
        now = status(self.path)
        return now[1] if now is not None and now[0] == count else None

    def rewrite(self) -> None:
        """Rewrite 5% of the memory (the first rewrite); remember the new SHA-256."""
        os.kill(self.pid, signal.SIGUSR1)
        self.digest = wait_until(lambda: self._at(1), 60, "the rewrite")
        self.count = 1

    def check(self, pid: int) -> None:
        """The process ``pid`` holds the memory last published (all of it hashed again)."""
        self.path.unlink()
        os.kill(pid, signal.SIGUSR2)
        assert wait_until(lambda: status(self.path), 60, "the check") == (self.count, self.digest)


@pytest.fixture
def settings(tmp_path: Path, criu_path: str) -> Settings:
    # 256 KiB chunks: ~100 chunks.
    return replace(this_host_settings(tmp_path, criu_path),
                   transfer=TransferSettings(chunk_size=1 << 18))


@pytest.fixture
def after_precopy(request: pytest.FixtureRequest) -> Iterator[list[Callable[[], None]]]:
    """Actions run once a create is committed (the first: the pre-copy's)."""
    actions: list[Callable[[], None]] = []
    done = [0]

    def observer(phase: str) -> None:
        if phase == "after-commit" and done[0] < len(actions):
            done[0] += 1
            actions[done[0] - 1]()

    with hooks.observe(observer):
        yield actions


def leftovers(settings: Settings) -> list[str]:
    return sorted(p.name for p in settings.scratch_dir.iterdir())


def test_the_final_step_compares_what_did_not_change_and_moves_the_memory_exactly(
    settings: Settings, procs: ProcessTracker, tmp_path: Path,
    after_precopy: list[Callable[[], None]],
) -> None:
    process = Rewriter(procs, tmp_path / "p")
    after_precopy.append(process.rewrite)
    with CheckpointManager(settings) as mgr:
        report = migrate(
            mgr.repository, MigrateRequest(T, "mv", str(process.pid)),
            destination=LocalDestination(mgr.repository),
        )
        assert [c.name for c in mgr.list(T)] == ["mv"]
        stats = mgr.get(T, "mv").stats
    procs.track(report.final.pid)
    pre, final = report.precopy[0], report.final
    # The pre-copy had nothing to compare with; the final step hashed the rewritten 5%
    # and the chunks around it, and compared the rest with the kept image.
    assert pre.bytes_scanned > SIZE_MIB << 20
    run = (SIZE_MIB << 20) // 20
    # Far less than a full pass: the rewritten run, the chunks around it and whatever the
    # interpreter itself touched between the two dumps (up to a quarter seen, with room).
    assert run <= final.bytes_hashed < final.bytes_scanned / 2, final
    assert final.bytes_compared >= final.bytes_scanned - final.bytes_hashed - (1 << 20)
    assert final.chunks_reused > 0 and final.chunks_new > 0
    assert final.bytes_hashed_whole <= final.bytes_scanned  # from its first change on
    assert stats["chunks_reused"] == final.chunks_reused  # recorded in the catalog too
    assert report.as_dict()["final"]["bytes_hashed"] == final.bytes_hashed
    text = "\n".join(format_report(report))
    assert f"{final.chunks_reused} unchanged chunks proven by comparing" in text
    # The process moved with its memory, byte for byte (the restore also verified every
    # chunk against its name).
    process.check(report.final.pid)
    assert leftovers(settings) == []  # the kept image went with the migration


def test_nothing_is_kept_when_the_final_create_fails(
    settings: Settings, procs: ProcessTracker, tmp_path: Path,
    after_precopy: list[Callable[[], None]],
) -> None:
    process = Rewriter(procs, tmp_path / "p")
    uploads, kept = [0], []

    def fail_final_upload(phase: str) -> None:
        if phase == "after-upload":
            uploads[0] += 1
            if uploads[0] == 2:
                kept.extend(n for n in leftovers(settings) if "-baseline-" in n)
                raise StorageError("store went away")

    after_precopy.append(process.rewrite)
    with CheckpointManager(settings) as mgr, hooks.observe(fail_final_upload):
        with pytest.raises(StorageError, match="failed at the final checkpoint mv") as err:
            migrate(
                mgr.repository, MigrateRequest(T, "mv", str(process.pid)),
                destination=LocalDestination(mgr.repository),
            )
        assert mgr.list(T) == []
    assert "restarted from the local image" in str(err.value)
    assert uploads[0] == 2 and len(kept) == 1  # the image was kept until then
    assert leftovers(settings) == []
    wait_until(lambda: pid_exists(process.pid), 10, "the process given back")
    process.check(process.pid)


def test_nothing_is_kept_when_the_migration_stops_before_the_final_dump(
    settings: Settings, procs: ProcessTracker, tmp_path: Path
) -> None:
    process = Rewriter(procs, tmp_path / "p")

    class NotReady(LocalDestination):
        def prepare_restore(self, *args: object, **kwargs: object) -> object:
            raise UsageError("destination not ready")

    request = MigrateRequest(T, "mv", str(process.pid))
    with CheckpointManager(settings) as mgr, pytest.raises(UsageError, match="stopped at getting"):
        migrate(mgr.repository, request, destination=NotReady(mgr.repository))
    assert leftovers(settings) == []
    process.check(process.pid)  # never stopped
