"""The whole-file digest of a file being packed (the manifest's ``FileEntry.digest``),
hashed in a thread of its own alongside the chunking, resumable from a kept state.

The store's names are a stream hash (BLAKE3, keyed in an encrypted store:
:meth:`~cryostash.store.sealing.Sealing.hasher`): the hasher's state after the first
``n`` bytes (a copy of it) is all it takes to go on from byte ``n``. With ``record``,
:class:`WholeHash` keeps such a copy every :data:`STEP` bytes (:attr:`WholeHash.states`,
offsets 0, STEP, 2 * STEP ...). Packing a later version of the file against it (live
migration's final checkpoint, :mod:`cryostash.transfer.baseline`) starts hashing at
:meth:`WholeHash.start` ``(at)`` once the first ``at`` bytes are proven equal to the kept
file's (memcmp, :mod:`cryostash.transfer.resync`), from the last kept state at or before
``at``: the digest is the one hashing the whole file gives (the state after those bytes
is the same, since the bytes are), and only the rest of the file is hashed.
"""

from __future__ import annotations

import bisect
import threading
from collections.abc import Sequence
from typing import Any

from cryostash.store.sealing import Sealing

#: Bytes between two kept hash states (a copy of a hasher is about 2 KB).
STEP = 4 << 20
#: A hasher's state after the first ``offset`` bytes: ``(offset, hasher)``, never updated.
State = tuple[int, Any]


class WholeHash:
    """The name of the bytes ``view`` under ``sealing``, hashed in a thread (see the
    module docstring).

    Args:
        kept: states of an earlier version's bytes (offsets ascending, from 0), valid
            for ``view`` up to where :meth:`start` says the bytes are proven equal.
        record: keep the states of ``view`` (:attr:`states`) for a later version.
    """

    def __init__(
        self, sealing: Sealing, view: memoryview, kept: Sequence[State] = (), record: bool = False
    ) -> None:
        self._sealing, self._view, self._kept, self._record = sealing, view, kept, record
        self._thread: threading.Thread | None = None
        self._name = ""
        self._error: BaseException | None = None
        self.states: list[State] = []
        self.hashed = 0  #: bytes hashed (the rest came from a kept state)

    def start(self, at: int = 0) -> None:
        """Start hashing, from the last kept state at or before ``at`` (the first ``at``
        bytes of ``view`` are proven equal to the kept version's). Later calls do
        nothing."""
        if self._thread is not None:
            return
        i = bisect.bisect_right(self._kept, at, key=lambda state: state[0]) - 1
        offset, state = self._kept[i] if i >= 0 else (0, None)
        hasher = self._sealing.hasher() if state is None else state.copy()
        if self._record:
            self.states = list(self._kept[: i + 1])  # states are never updated: shared
        self._thread = threading.Thread(target=self._run, args=(offset, hasher), daemon=True)
        self._thread.start()

    def _run(self, offset: int, hasher: Any) -> None:
        try:
            view, pos = self._view, offset
            while pos < len(view):
                end = min(len(view), (pos // STEP + 1) * STEP)
                hasher.update(view[pos:end])
                pos = end
                if self._record and pos % STEP == 0:
                    self.states.append((pos, hasher.copy()))
            self.hashed = len(view) - offset
            self._name = self._sealing.name_from(hasher)
        except BaseException as exc:  # raised by result()
            self._error = exc

    def result(self) -> str:
        """The name (waits for the thread; hashes from the start if not started).

        Raises:
            Whatever hashing raised.
        """
        self.start()
        self.join()
        if self._error is not None:
            raise self._error
        return self._name

    def join(self) -> None:
        """Wait for the thread, if started."""
        if self._thread is not None:
            self._thread.join()
