"""Sizes and durations as people write them, and byte counts for people (a leaf module).

- Sizes (:func:`parse_size`): plain bytes or a number with a binary unit, ``k``, ``M``,
  ``G``, ``T`` (optionally followed by ``B`` or ``iB``): ``4096``, ``512k``, ``1M``,
  ``2GiB``.
- Durations (:func:`parse_duration`), the one grammar of every duration cryostash takes
  (``gc --grace``, ``prune --keep-within``, ``--since``): a plain number of seconds
  (``0``, ``90``, ``1.5``), or one or more NUMBER UNIT parts with the units ``s``, ``m``
  (minutes), ``h``, ``d``, ``w``, NUMBER a whole or decimal number: ``30s``, ``15m``,
  ``1h30m``, ``1.5d``, ``2w``. Case and surrounding blanks do not matter; a sign,
  inner blanks, ``nan`` and ``inf`` are refused. A caller may narrow it (``--keep-within``
  must be longer than 0; ``--since`` reads a plain number as an ISO-8601 time, so its
  durations have a unit); it never widens it. At most :data:`MAX_DURATION_S` (100 years).
- Sizes are at most :data:`MAX_SIZE` (1 EiB); an option may narrow that.
- :func:`format_size`: ``512 B``, ``1.5 MiB``.
"""

from __future__ import annotations

import math
import re

from cryostash.errors import UsageError

#: Seconds in one of each duration unit.
DURATION_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}
_NUMBER = r"(?:\d+(?:\.\d*)?|\.\d+)"
_SECONDS = re.compile(_NUMBER)
_PARTS = re.compile(rf"(?:{_NUMBER}[smhdw])+")
_PART = re.compile(rf"({_NUMBER})([smhdw])")
_SIZE_UNITS = {"k": 1 << 10, "m": 1 << 20, "g": 1 << 30, "t": 1 << 40}
#: The longest duration taken: 100 years (36500d); a longer one is a usage error.
MAX_DURATION_S = 36500 * 86400
#: The largest size taken: 1 EiB; a larger one is a usage error.
MAX_SIZE = 1 << 60


def parse_duration(text: str, what: str = "duration") -> float:
    """Seconds in ``text``: ``0``, ``90``, ``1.5``, ``30s``, ``15m``, ``1h30m``, ``7d``,
    ``2w`` (see the module docstring).

    Raises:
        UsageError: ``invalid WHAT 'TEXT': expected e.g. 0, 30s, 15m, 24h, 7d``,
            ``invalid WHAT 'TEXT': it must not be negative``, or longer than
            :data:`MAX_DURATION_S`.
    """
    value = text.strip().lower() if isinstance(text, str) else ""
    if value.startswith("-") and _valid(value[1:]):
        raise UsageError(f"invalid {what} {text!r}: it must not be negative")
    if not _valid(value):
        raise UsageError(f"invalid {what} {text!r}: expected e.g. 0, 30s, 15m, 24h, 7d")
    if _SECONDS.fullmatch(value):
        seconds = float(value)
    else:
        seconds = sum(float(n) * DURATION_UNITS[u] for n, u in _PART.findall(value))
    if not math.isfinite(seconds):
        raise UsageError(f"invalid {what} {text!r}: expected e.g. 0, 30s, 15m, 24h, 7d")
    if seconds > MAX_DURATION_S:
        raise UsageError(f"invalid {what} {text!r}: at most 36500d (100 years)")
    return seconds


def _valid(value: str) -> bool:
    return bool(_SECONDS.fullmatch(value) or _PARTS.fullmatch(value))


def parse_size(text: str, what: str = "size", maximum: int = MAX_SIZE) -> int:
    """``"1048576"``, ``"1M"``, ``"512k"``, ``"2GiB"`` -> bytes (binary units).

    Raises:
        UsageError: ``invalid WHAT 'TEXT': expected e.g. 1048576, 1M, 512k, 2G``, or
            larger than ``maximum`` (default :data:`MAX_SIZE`).
    """
    raw = text.strip().lower().removesuffix("ib").removesuffix("b")
    factor = _SIZE_UNITS.get(raw[-1:], 1)
    number = raw[:-1] if raw[-1:] in _SIZE_UNITS else raw
    try:
        value = float(number)
    except ValueError:
        value = -1.0
    if not value >= 0:
        raise UsageError(f"invalid {what} {text!r}: expected e.g. 1048576, 1M, 512k, 2G")
    if not value * factor <= maximum:  # inf and nan included
        raise UsageError(f"invalid {what} {text!r}: at most {maximum} bytes")
    return int(value * factor)


def format_size(size: float) -> str:
    """``512 B``, ``1.5 MiB``: a byte count for people."""
    value = size
    for unit in ("B", "KiB", "MiB", "GiB"):
        if abs(value) < 1024 or unit == "GiB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    raise AssertionError("unreachable")  # pragma: no cover
