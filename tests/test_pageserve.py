"""PageSource's failure contract (``transfer/pageserve.py``), without CRIU: the first
failure is reported once, and **no read fails before the failure handler has returned**
(the lazy restore kills the restored process in that handler: a read failing earlier
would let CRIU's lazy-pages daemon exit and the kernel hand the process zeros)."""

from __future__ import annotations

import errno
import threading
from types import SimpleNamespace

import pytest

from cryostash.errors import StorageError
from cryostash.store import FetchedChunk
from cryostash.transfer.pageserve import PageSource
from cryostash.types import FileEntry

PAGE = 4096
GOOD, BAD = "a" * 64, "b" * 64
URL = "s3://bucket/cs"


class UnreachableFor:
    """A store stand-in: every chunk reads as ``x`` bytes, except ``BAD``, whose read fails
    as an unreachable S3 store's does (after its retries)."""

    url = URL
    sealing = SimpleNamespace(zero_name=lambda size: "0" * 64)

    @property
    def chunks(self) -> UnreachableFor:  # the store's chunks: this stand-in too
        return self

    def fetch(self, digest: str, size: int | None, *, what: str) -> FetchedChunk:
        if digest == BAD:
            raise StorageError(
                f"cannot read blob {BAD} in store {URL}: cannot connect to the endpoint: "
                "Could not connect to the endpoint URL"
            )
        assert size is not None
        return FetchedChunk(b"x" * size, size, False, False)

    def trim_cache(self) -> None:
        pass


def test_no_read_fails_before_the_failure_handler_returned() -> None:
    entry = FileEntry("pages-1.img", 0o600, 3 * PAGE, (GOOD, BAD, GOOD), "f" * 64,
                      (PAGE, PAGE, PAGE))
    entered, release = threading.Event(), threading.Event()
    reasons: list[str] = []

    def on_failure(reason: str) -> None:  # the lazy restore kills the process here
        reasons.append(reason)
        entered.set()
        assert release.wait(30)

    pages = PageSource(UnreachableFor(), [entry], on_failure=on_failure)  # type: ignore[arg-type]
    outcomes: dict[str, BaseException | bytes] = {}

    def read(label: str, offset: int) -> None:
        try:
            outcomes[label] = pages.read("pages-1.img", offset, PAGE)
        except BaseException as exc:
            outcomes[label] = exc

    failing = threading.Thread(target=read, args=("failing", PAGE))
    failing.start()
    assert entered.wait(30), "the failure handler was not called"
    other = threading.Thread(target=read, args=("other", 0))  # a chunk nobody fetched yet
    other.start()
    other.join(0.5)
    failing.join(0.1)
    assert not outcomes, f"a read returned while the failure handler ran: {outcomes}"
    release.set()
    for thread in (failing, other):
        thread.join(30)
        assert not thread.is_alive()
    for label in ("failing", "other"):
        exc = outcomes[label]
        assert isinstance(exc, OSError) and exc.errno == errno.EIO, (label, exc)
    assert len(reasons) == 1
    assert reasons[0].startswith(f"blob {BAD} of file pages-1.img could not be fetched: ")
    assert f"in store {URL}: cannot connect to the endpoint" in reasons[0]
    with pytest.raises(OSError) as later:
        pages.read("pages-1.img", 2 * PAGE, PAGE)
    assert later.value.errno == errno.EIO
    pages.stop()
