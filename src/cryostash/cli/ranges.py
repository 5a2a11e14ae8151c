"""The range of every whole-number option of the command line, and the ``type=`` that
enforces it (a value outside is a usage error: exit 2, the option and its range named).

Sizes (``--chunk-size``, ``--cache-size``, ``--max-member-size``) and durations
(``--grace``, ``--keep-within``, ``--since``, the lease) are bounded where they are parsed
(:mod:`cryostash.units`, :mod:`cryostash.config.transfer`); docs/cli.md lists them all.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable

from cryostash.redact import escape

#: ``--jobs``: parallel transfers.
JOBS = (1, 64)
#: ``events --limit``: the last N events (0: none).
EVENTS_LIMIT = (0, 1_000_000_000)
#: ``migrate --precopy``: pre-copy checkpoints before the final one.
PRECOPY = (0, 10)
#: ``--keep-last``: checkpoints kept per target.
KEEP_LAST = (1, 1_000_000)


def whole(bounds: tuple[int, int]) -> Callable[[str], int]:
    """An argparse ``type``: a whole number within ``bounds`` (both included)."""
    low, high = bounds

    def parse(text: str) -> int:
        return whole_number(text, bounds, argparse.ArgumentTypeError, "value")

    parse.__name__ = f"whole number {low}..{high}"
    return parse


def whole_number(
    text: str, bounds: tuple[int, int], error: Callable[[str], Exception], what: str
) -> int:
    """``text`` as a whole number within ``bounds``, else ``error("invalid WHAT 'TEXT':
    expected a whole number from LOW to HIGH")`` is raised. ASCII digits only, at most
    19 of them: the value is never built from an unbounded string."""
    low, high = bounds
    digits = text.strip()
    if digits.isascii() and digits.isdigit() and len(digits) <= 19 and low <= int(digits) <= high:
        return int(digits)
    raise error(
        f"invalid {what} '{escape(text[:40])}': expected a whole number from {low} to {high}"
    )
