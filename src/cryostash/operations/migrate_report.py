"""What a migration reports (:class:`MigrationReport`, ``migrate --json``) and how the
final step's figures and the downtime are computed from the final create's statistics and
the destination's ``restore --json`` object (the parts are described in
:mod:`cryostash.operations.migrate`). Pure: no I/O.

A lazy migration's restore object (``restore --lazy --json``: ``lazy``,
``time_to_running_s``, ``prepare_s``, ``restore_s``, ``eager_bytes``,
``eager_download_s``, ``helper_pid``) gives the same parts: ``download_s`` is the eager
files' download, ``pid_wait_s`` the time between the end of the helper's preparation and
CRIU's start, ``restore_s`` CRIU's lazy restore until the process runs. The byte counts of
the download are then None (the pages arrive after the process runs; the ``restore``
event records them), and the report says ``lazy: true``. A report of a migration that was
not lazy has none of the lazy keys.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass
from typing import Any


@dataclass(frozen=True)
class PrecopyStep:
    """One pre-copy checkpoint (the process kept running) and its prefetch.

    ``prefetch`` is the destination's ``prefetch --json`` object (``duration_s``,
    ``bytes_downloaded``, ``chunks_downloaded``), None when prefetch is off.
    """

    name: str
    frozen_s: float | None
    dump_s: float
    upload_s: float
    bytes_scanned: int
    bytes_uploaded: int
    chunks_new: int
    prefetch: dict[str, Any] | None


@dataclass(frozen=True)
class FinalStep:
    """The final checkpoint (the process stopped) and its restore at the destination.

    Times in seconds, sizes in bytes; the parts of the downtime are described in
    :mod:`cryostash.operations.migrate`. ``pid`` is the restored root PID at the
    destination. A lazy restore (``lazy``): the ``bytes_*`` / ``chunks_*`` of the download
    are None (the pages come after the process runs), ``eager_bytes`` is the size of the
    files restored before it ran and ``helper_pid`` the PID of the helper serving its
    pages at the destination; both are None otherwise. ``bytes_hashed``,
    ``bytes_hashed_whole``, ``bytes_compared`` and ``chunks_reused`` are the final
    create's comparison with the last pre-copy's kept image (create's stats).
    """

    name: str
    frozen_s: float | None
    dump_s: float
    upload_s: float
    commit_s: float
    bytes_scanned: int
    bytes_uploaded: int
    chunks_new: int
    bytes_hashed: int
    bytes_hashed_whole: int
    bytes_compared: int
    chunks_reused: int
    handoff_s: float
    download_s: float
    pid_wait_s: float
    restore_s: float
    bytes_downloaded: int | None
    bytes_from_cache: int | None
    chunks_downloaded: int | None
    chunks_from_cache: int | None
    pid: int
    lazy: bool = False
    eager_bytes: int | None = None
    helper_pid: int | None = None


@dataclass(frozen=True)
class MigrationReport:
    """What a migration did and measured (``migrate --json`` prints :meth:`as_dict`)."""

    target: str
    name: str
    destination: str
    precopy: tuple[PrecopyStep, ...]
    final: FinalStep
    downtime_s: float
    removed: tuple[str, ...] = ()
    warnings: tuple[str, ...] = ()

    @property
    def first_bytes_uploaded(self) -> int:
        """Bytes the first step uploaded (the first pre-copy, else the final)."""
        return self.precopy[0].bytes_uploaded if self.precopy else self.final.bytes_uploaded

    @property
    def first_bytes_downloaded(self) -> int | None:
        """Bytes the destination downloaded in the first step (its prefetch, or the final
        restore without pre-copy); None when the first pre-copy was not prefetched, or
        without pre-copy when the restore was lazy."""
        if not self.precopy:
            return self.final.bytes_downloaded
        fetched = self.precopy[0].prefetch
        return None if fetched is None else int(fetched.get("bytes_downloaded", 0))

    @property
    def lazy(self) -> bool:
        """Whether the destination restored lazily (its pages follow after the downtime)."""
        return self.final.lazy

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready view; ``lazy`` (true) and the lazy keys of ``final`` only when lazy."""
        final = asdict(self.final)
        if not self.lazy:
            for key in _LAZY_KEYS:
                del final[key]
        return {
            "target": self.target,
            "name": self.name,
            "destination": self.destination,
            "pid": self.final.pid,
            "downtime_s": self.downtime_s,
            **({"lazy": True} if self.lazy else {}),
            "precopy": [asdict(step) for step in self.precopy],
            "final": final,
            "first_bytes_uploaded": self.first_bytes_uploaded,
            "first_bytes_downloaded": self.first_bytes_downloaded,
            "removed": list(self.removed),
            "warnings": list(self.warnings),
        }


#: The keys of ``final`` that only a lazy migration's report has.
_LAZY_KEYS = ("lazy", "eager_bytes", "helper_pid")


def precopy_step(
    name: str, s: Mapping[str, Any], fetched: dict[str, Any] | None
) -> PrecopyStep:
    """A pre-copy's figures from its create stats and its prefetch's result."""
    return PrecopyStep(
        name=name,
        frozen_s=_opt_float(s.get("frozen_s")),
        dump_s=float(s.get("dump_s", 0.0)),
        upload_s=float(s.get("upload_s", 0.0)),
        bytes_scanned=int(s.get("bytes_scanned", 0)),
        bytes_uploaded=int(s.get("bytes_uploaded", 0)),
        chunks_new=int(s.get("chunks_new", 0)),
        prefetch=fetched,
    )


def final_step(
    name: str,
    stats: Mapping[str, Any],
    restored: Mapping[str, Any],
    t_create: float,
    t_created: float,
    t_done: float,
) -> tuple[FinalStep, float]:
    """The final step's figures and the downtime (their sum; see the module docstring).

    ``restored`` is the destination's ``restore --json`` object (lazy or not)."""
    dump_s = float(stats.get("dump_s", 0.0))
    upload_s = float(stats.get("upload_s", 0.0))
    total_s = float(stats.get("total_s", dump_s + upload_s))
    after_upload = float(stats.get("commit_s", 0.0))
    # The dump started total_s + commit_s before create returned (never before the call).
    started = max(t_create, t_created - total_s - after_upload)
    lazy = restored.get("lazy") is True
    criu_run = _opt_float(restored.get("duration_s"))
    if lazy:  # the engine's part: from the helper's end of preparation to running
        engine_total = float(restored.get("time_to_running_s", 0.0)) - float(
            restored.get("prepare_s", 0.0)
        )
        download_s = float(restored.get("eager_download_s", 0.0))
    else:
        engine_total = float(restored.get("restore_s", 0.0))
        download_s = float(restored.get("download_s", 0.0))
    restore_s = engine_total if criu_run is None else min(criu_run, engine_total)
    final = FinalStep(
        name=name,
        frozen_s=_opt_float(stats.get("frozen_s")),
        dump_s=_r(dump_s),
        upload_s=_r(upload_s),
        commit_s=_r(t_created - started - dump_s - upload_s),
        bytes_scanned=int(stats.get("bytes_scanned", 0)),
        bytes_uploaded=int(stats.get("bytes_uploaded", 0)),
        chunks_new=int(stats.get("chunks_new", 0)),
        **{k: int(stats.get(k, 0)) for k in ("bytes_hashed", "bytes_hashed_whole",
                                             "bytes_compared", "chunks_reused")},
        handoff_s=_r(t_done - t_created - download_s - engine_total),
        download_s=_r(download_s),
        pid_wait_s=_r(engine_total - restore_s),
        restore_s=_r(restore_s),
        bytes_downloaded=None if lazy else int(restored.get("bytes_downloaded", 0)),
        bytes_from_cache=None if lazy else int(restored.get("bytes_from_cache", 0)),
        chunks_downloaded=None if lazy else int(restored.get("chunks_downloaded", 0)),
        chunks_from_cache=None if lazy else int(restored.get("chunks_from_cache", 0)),
        pid=int(restored["pid"]),
        lazy=lazy,
        eager_bytes=_opt_int(restored.get("eager_bytes")) if lazy else None,
        helper_pid=_opt_int(restored.get("helper_pid")) if lazy else None,
    )
    return final, _r(t_done - started)


def _opt_float(value: object) -> float | None:
    return float(value) if isinstance(value, int | float) and not isinstance(value, bool) else None


def _opt_int(value: object) -> int | None:
    return int(value) if isinstance(value, int | float) and not isinstance(value, bool) else None


def _r(value: float) -> float:
    return round(value, 6)


__all__ = ["FinalStep", "MigrationReport", "PrecopyStep", "final_step", "precopy_step"]
