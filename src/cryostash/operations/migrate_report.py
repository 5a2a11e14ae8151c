"""What a migration reports (:class:`MigrationReport`, ``migrate --json``) and how the
final step's figures and the downtime are computed from the final create's statistics and
the destination's ``restore --json`` object (the parts are described in
:mod:`cryostash.operations.migrate`). Pure: no I/O.
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

    Times in seconds, sizes in bytes; the parts of the downtime are described in the
    module docstring. ``pid`` is the restored root PID at the destination.
    """

    name: str
    frozen_s: float | None
    dump_s: float
    upload_s: float
    commit_s: float
    bytes_scanned: int
    bytes_uploaded: int
    chunks_new: int
    handoff_s: float
    download_s: float
    pid_wait_s: float
    restore_s: float
    bytes_downloaded: int
    bytes_from_cache: int
    chunks_downloaded: int
    chunks_from_cache: int
    pid: int


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
        restore without pre-copy); None when the first pre-copy was not prefetched."""
        if not self.precopy:
            return self.final.bytes_downloaded
        fetched = self.precopy[0].prefetch
        return None if fetched is None else int(fetched.get("bytes_downloaded", 0))

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready view."""
        return {
            "target": self.target,
            "name": self.name,
            "destination": self.destination,
            "pid": self.final.pid,
            "downtime_s": self.downtime_s,
            "precopy": [asdict(step) for step in self.precopy],
            "final": asdict(self.final),
            "first_bytes_uploaded": self.first_bytes_uploaded,
            "first_bytes_downloaded": self.first_bytes_downloaded,
            "removed": list(self.removed),
            "warnings": list(self.warnings),
        }



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
    """The final step's figures and the downtime (their sum; see the module docstring)."""
    dump_s = float(stats.get("dump_s", 0.0))
    upload_s = float(stats.get("upload_s", 0.0))
    total_s = float(stats.get("total_s", dump_s + upload_s))
    after_upload = float(stats.get("commit_s", 0.0))
    # The dump started total_s + commit_s before create returned (never before the call).
    started = max(t_create, t_created - total_s - after_upload)
    engine_total = float(restored.get("restore_s", 0.0))
    criu_run = _opt_float(restored.get("duration_s"))
    restore_s = engine_total if criu_run is None else min(criu_run, engine_total)
    download_s = float(restored.get("download_s", 0.0))
    final = FinalStep(
        name=name,
        frozen_s=_opt_float(stats.get("frozen_s")),
        dump_s=_r(dump_s),
        upload_s=_r(upload_s),
        commit_s=_r(t_created - started - dump_s - upload_s),
        bytes_scanned=int(stats.get("bytes_scanned", 0)),
        bytes_uploaded=int(stats.get("bytes_uploaded", 0)),
        chunks_new=int(stats.get("chunks_new", 0)),
        handoff_s=_r(t_done - t_created - download_s - engine_total),
        download_s=_r(download_s),
        pid_wait_s=_r(engine_total - restore_s),
        restore_s=_r(restore_s),
        bytes_downloaded=int(restored.get("bytes_downloaded", 0)),
        bytes_from_cache=int(restored.get("bytes_from_cache", 0)),
        chunks_downloaded=int(restored.get("chunks_downloaded", 0)),
        chunks_from_cache=int(restored.get("chunks_from_cache", 0)),
        pid=int(restored["pid"]),
    )
    return final, _r(t_done - started)



def _opt_float(value: object) -> float | None:
    return float(value) if isinstance(value, int | float) and not isinstance(value, bool) else None


def _r(value: float) -> float:
    return round(value, 6)


__all__ = ["FinalStep", "MigrationReport", "PrecopyStep", "final_step", "precopy_step"]
