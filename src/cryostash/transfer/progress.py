"""``Progress``: what a long operation reports its advance to, and the phases there are.

The part of ``fsspec.callbacks.Callback`` that cryostash calls (the CLI's progress bars
and ``fsspec``'s own callbacks both fit): the total, once known, then increments.
Implementations must be thread-safe: a transfer's workers report from several threads.

A progress factory (``Repository(progress=...)``) is called with a phase name of
:data:`PHASES` and returns a callback or None; :data:`PHASES` says what each phase counts,
so that a front end can draw it (bytes, items, or no count: only the time it takes).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Protocol, TypeVar

T = TypeVar("T")


class Progress(Protocol):
    """The part of ``fsspec.callbacks.Callback`` that cryostash calls."""

    def set_size(self, size: int | None) -> None: ...

    def relative_update(self, inc: int = 1) -> None: ...


@dataclass(frozen=True)
class Phase:
    """What a phase's progress counts.

    Attributes:
        label: what a front end shows (``upload``, ``gc: blobs deleted``).
        unit: ``B`` (bytes), a plural noun (``blobs``, ``manifests``: items), or None:
            nothing is counted (``set_size`` and ``relative_update`` are never called),
            the phase only lasts (e.g. CRIU dumping).
    """

    label: str
    unit: str | None


#: Every phase an operation reports, by name.
PHASES: dict[str, Phase] = {
    "upload": Phase("upload", "B"),  # create: chunks uploaded
    "download": Phase("download", "B"),  # restore, prefetch, export: chunks fetched
    "dump": Phase("dump", None),  # create: the engine checkpointing (CRIU dump)
    "import": Phase("import", "B"),  # import: archive bytes read and unpacked
    "verify": Phase("verify", "B"),  # verify --read-data: plain bytes read and hashed
    "gc-manifests": Phase("gc: manifests read", "manifests"),
    "gc-blobs": Phase("gc: blobs deleted", "blobs"),
    "rebuild": Phase("rebuild: manifests read", "manifests"),
}


def counted(items: Sequence[T], callback: Progress | None) -> Iterator[T]:
    """Yield each of ``items``; ``callback`` is told their number first, then one more
    once each is done (when the loop asks for the next, ``continue`` included)."""
    if callback is not None:
        callback.set_size(len(items))
    for item in items:
        yield item
        if callback is not None:
            callback.relative_update(1)
