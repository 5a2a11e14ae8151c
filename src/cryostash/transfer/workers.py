"""Helpers shared by the transfers (:mod:`~cryostash.transfer.pack`, ``unpack``,
``prefetch``): walking an image folder, serialised progress, a fail-fast thread pool."""

from __future__ import annotations

import os
import stat
import threading
from collections.abc import Callable, Iterable
from concurrent.futures import FIRST_EXCEPTION, ThreadPoolExecutor, wait
from pathlib import Path
from typing import TypeVar

from cryostash.errors import StorageError, UsageError
from cryostash.transfer.progress import Progress

T = TypeVar("T")
__all__ = ["Shared", "run_all", "walk"]


def walk(image_dir: Path) -> list[tuple[str, Path, int]]:
    """``(relative path, absolute path, permission bits)`` of every regular file under
    ``image_dir``, sorted by relative path.

    Raises:
        UsageError: a symbolic link, device, FIFO or socket is in the tree (named).
        StorageError: the folder cannot be read.
    """
    found: list[tuple[str, Path, int]] = []
    stack = [(Path(image_dir), "")]
    try:
        while stack:
            folder, prefix = stack.pop()
            with os.scandir(folder) as it:
                for entry in it:
                    rel = f"{prefix}{entry.name}"
                    st = entry.stat(follow_symlinks=False)
                    if stat.S_ISDIR(st.st_mode):
                        stack.append((Path(entry.path), rel + "/"))
                    elif stat.S_ISREG(st.st_mode):
                        found.append((rel, Path(entry.path), stat.S_IMODE(st.st_mode)))
                    else:
                        kind = "a symbolic link" if stat.S_ISLNK(st.st_mode) else (
                            "not a regular file (device, FIFO or socket)"
                        )
                        raise UsageError(
                            f"{entry.path} is {kind}: a checkpoint image may hold only "
                            "regular files and folders"
                        )
    except OSError as exc:
        raise StorageError(f"cannot scan {image_dir}: {exc}") from exc
    return sorted(found)


class Shared:
    """Counters and progress shared by worker threads (every update under one lock)."""

    def __init__(self, callback: Progress | None) -> None:
        self._callback = callback
        self.lock = threading.Lock()

    def set_size(self, size: int) -> None:
        if self._callback is not None:
            with self.lock:
                self._callback.set_size(size)

    def progress(self, inc: int) -> None:
        if self._callback is not None and inc:
            with self.lock:
                self._callback.relative_update(inc)


def run_all(fn: Callable[[T], None], items: Iterable[T], jobs: int) -> None:
    """Call ``fn`` on every item, on ``jobs`` threads; at the first failure, cancel the
    calls not started yet, let the running ones end, and raise that failure."""
    with ThreadPoolExecutor(max_workers=jobs) as pool:
        futures = [pool.submit(fn, item) for item in items]
        try:
            wait(futures, return_when=FIRST_EXCEPTION)
        finally:
            for future in futures:
                future.cancel()
    for future in futures:
        exc = None if future.cancelled() else future.exception()
        if exc is not None:
            raise exc
