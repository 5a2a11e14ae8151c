"""A stand-in engine for tests of storage-side behaviour (gc, verify, rebuild, faults).

No process is involved: ``dump(locator)`` copies the folder named by ``locator`` into
the image folder, and ``restore`` copies the verified image folder into the folder
named by the first extra argument. So tests choose the exact bytes of a checkpoint
and can compare what comes back, in milliseconds. Real CRIU is exercised by the
end-to-end, crash and corruption tests.
"""

from __future__ import annotations

import os
import random
import shutil
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from cryostash import CheckpointManager, Repository, Settings
from cryostash.engines.base import Engine
from cryostash.types import Availability, DumpOptions, DumpStats, RestoreOptions, RestoreResult

#: Read/copy block of the transfers: sizes around it are the interesting ones.
BLOCK = 1 << 20


class FakeEngine:
    """Engine ``fake``: a checkpoint is a copy of a folder."""

    name = "fake"

    def available(self) -> Availability:
        return Availability(ok=True, version="1.0")

    def dump(self, locator: str, image_dir: Path, options: DumpOptions) -> DumpStats:
        shutil.copytree(locator, image_dir, dirs_exist_ok=True)
        return DumpStats(duration_s=0.0, root_pid=None, engine_version="1.0")

    def restore(self, image_dir: Path, options: RestoreOptions) -> RestoreResult:
        """Copy the image into the folder of the first extra argument. Without one (the
        manager restarting the "process" after a failed create), there is nothing to do."""
        if options.extra_args:
            shutil.copytree(image_dir, options.extra_args[0], dirs_exist_ok=True)
        return RestoreResult(pid=os.getpid(), duration_s=0.0)


class FakeRepository(Repository):
    """A repository whose every engine is :class:`FakeEngine`."""

    def engine(self, name: str) -> Engine:
        return FakeEngine()


class FakeManager(CheckpointManager):
    """A manager working on a :class:`FakeRepository`."""

    def __init__(self, settings: Settings, **options: Any) -> None:
        self.repository = FakeRepository(settings, **options)


def make_image(folder: Path, seed: int = 0, shared: bytes = b"shared by every image") -> dict[
    str, bytes
]:
    """Write a small image folder (random, empty, nested, shared files); return its files."""
    rnd = random.Random(seed)
    files = {
        "core.img": rnd.randbytes(3000),
        "pages.img": rnd.randbytes(BLOCK + 5),
        "empty.img": b"",
        "sub/shared.img": shared,
    }
    write_tree(folder, files)
    return files


def write_tree(folder: Path, files: Mapping[str, bytes]) -> None:
    """Write ``files`` (relative path -> bytes) under ``folder``."""
    for rel, data in files.items():
        path = folder / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)


def read_tree(folder: Path) -> dict[str, bytes]:
    """Every file under ``folder`` (relative path -> bytes)."""
    return {
        p.relative_to(folder).as_posix(): p.read_bytes() for p in folder.rglob("*") if p.is_file()
    }
