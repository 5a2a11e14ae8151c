"""Which blobs a partial ``verify --read-data-subset`` reads (restic's and kopia's forms).

Every blob has a position on a ring: the first 64 bits of its BLAKE3 digest (uniform, so
a share of the ring is the same share of the blobs, and of their bytes on average).

- ``K/M``: the blobs whose position mod ``M`` is ``K - 1``. Running ``1/M`` ... ``M/M``
  (in any order, on any days) reads every blob exactly once.
- ``N%``: a window of ``N`` percent of the ring, starting at ``seed * N%``: the runs of
  consecutive seeds lay consecutive windows end to end, so any ``ceil(100 / N)``
  consecutive seeds read every blob at least once (10 %: any 10 consecutive seeds), and
  any more runs go round again. The default seed is the day (days since 1970-01-01, UTC):
  a daily ``--read-data-subset 10%`` reads the whole store every 10 days, each blob
  within 10 days of its upload. ``--seed`` picks another window.

A blob's position never changes, so what a window holds moves only as blobs come and go.
"""

from __future__ import annotations

import math
import re
import time
from dataclasses import dataclass
from fractions import Fraction

from cryostash.errors import UsageError

#: Positions are 64-bit.
RING = 1 << 64


def position(digest: str) -> int:
    """The blob's place on the ring (the first 16 hex digits of its digest)."""
    return int(digest[:16], 16)


def today() -> int:
    """The default seed: days since 1970-01-01 (UTC)."""
    return int(time.time() // 86400)


@dataclass(frozen=True)
class Subset:
    """A share of the blobs: ``K/M`` (``part``, ``parts``) or ``N%`` (``percent``)."""

    text: str
    part: int = 0
    parts: int = 0
    percent: Fraction | None = None

    def window(self, seed: int) -> tuple[int, int]:
        """``(start, width)`` on the ring of the ``N%`` window of ``seed``."""
        assert self.percent is not None
        width = math.ceil(self.percent * RING / 100)  # rounded up: windows never leave gaps
        return (seed * width) % RING, min(width, RING)

    def selects(self, digest: str, seed: int) -> bool:
        """True when the blob ``digest`` is in this subset for ``seed``."""
        where = position(digest)
        if self.percent is None:
            return where % self.parts == self.part - 1
        start, width = self.window(seed)
        return (where - start) % RING < width

    def describe(self, seed: int) -> str:
        """``10% (seed 20061: window 0x3333... + 10%)`` or ``2/7``: what a run read."""
        if self.percent is None:
            return f"{self.part}/{self.parts}"
        start, _ = self.window(seed)
        return f"{self.text} (seed {seed}: from {start / RING:.4f} of the ring)"


def parse_subset(text: str) -> Subset:
    """``N%`` (0 < N <= 100, decimals allowed) or ``K/M`` (1 <= K <= M).

    Raises:
        UsageError: ``invalid --read-data-subset 'TEXT': expected N% (0 < N <= 100) or K/M
            (1 <= K <= M), e.g. 10% or 1/7``.
    """
    value = text.strip()
    problem = UsageError(
        f"invalid --read-data-subset {text!r}: expected N% (0 < N <= 100) or K/M "
        "(1 <= K <= M), e.g. 10% or 1/7"
    )
    if value.endswith("%"):
        number = value[:-1].strip()
        if not re.fullmatch(r"[0-9]{1,3}(\.[0-9]{1,6})?", number):
            raise problem
        percent = Fraction(number)
        if not 0 < percent <= 100:
            raise problem
        return Subset(text=f"{number}%", percent=percent)
    found = re.fullmatch(r"([0-9]{1,9})\s*/\s*([0-9]{1,9})", value)
    if found is None:
        raise problem
    k, m = int(found[1]), int(found[2])
    if not 1 <= k <= m:
        raise problem
    return Subset(text=f"{k}/{m}", part=k, parts=m)
