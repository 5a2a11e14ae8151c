"""Output for people: every human-readable line goes through :func:`say`; and the lines
``--print-stats`` prints after a create or a restore.

:func:`say` applies the redaction rule (:func:`cryostash.redact.redact_text`: no secret is
ever printed) and escapes control characters (:func:`cryostash.redact.escape`): text that
comes from a store, a catalog or another host (hosts, labels, kernel, versions, paths,
stats, error details) cannot move the cursor, clear the screen or forge a line. JSON
output (``print_json``) is exact and does not go through it.

The stats themselves (keys, units) are built and documented by
:mod:`cryostash.transfer.datapath`; this module only chooses which to show and how.
"""

from __future__ import annotations

import sys
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from cryostash.redact import escape, redact_text
from cryostash.units import format_size


def clean(text: object, *, multiline: bool = False) -> str:
    """``text`` as it may be printed: redacted, control characters escaped (with
    ``multiline``, newlines kept: a message of several lines of cryostash's own)."""
    shown = redact_text(str(text))
    if multiline:
        return "\n".join(escape(line) for line in shown.split("\n"))
    return escape(shown)


def say(
    text: object = "", *, err: bool = False, multiline: bool = False, flush: bool = False
) -> None:
    """Print one line for people (stdout, or stderr with ``err``) through :func:`clean`."""
    print(clean(text, multiline=multiline), file=sys.stderr if err else sys.stdout, flush=flush)

def count(n: int, word: str, plural: str | None = None) -> str:
    """``n`` and ``word`` in the number it needs: ``1 checkpoint``, ``2 checkpoints``."""
    return f"{n} {word if n == 1 else plural or word + 's'}"


def table(heads: Sequence[str], rows: Iterable[Sequence[str]]) -> None:
    """Print ``heads`` and ``rows`` as left-aligned columns three spaces apart."""
    rows = [tuple(r) for r in rows]
    widths = [max([len(h), *(len(r[k]) for r in rows)]) for k, h in enumerate(heads)]
    for row in [tuple(heads), *rows]:
        say("   ".join(f"{c:<{w}}" for c, w in zip(row, widths, strict=True)).rstrip())


#: What ``--print-stats`` shows, in this order: (key, label, unit).
_SHOWN = (
    ("frozen_s", "frozen", "s"),
    ("dump_s", "dump", "s"),
    ("upload_s", "upload", "s"),
    ("download_s", "download", "s"),
    ("restore_s", "restore", "s"),
    ("total_s", "total", "s"),
    ("bytes_scanned", "bytes scanned", "B"),
    ("bytes_restored", "bytes restored", "B"),
    ("bytes_new", "bytes new", "B"),
    ("bytes_uploaded", "bytes uploaded", "B"),
    ("bytes_stored", "bytes stored", "B"),
    ("bytes_downloaded", "bytes downloaded", "B"),
    ("bytes_from_cache", "bytes from cache", "B"),
    ("chunks_total", "chunks total", ""),
    ("chunks_new", "chunks new", ""),
    ("chunks_downloaded", "chunks downloaded", ""),
    ("chunks_from_cache", "chunks from cache", ""),
)


def format_stats(stats: Mapping[str, Any]) -> list[str]:
    """Human-readable lines of the stats a create or restore recorded (``--print-stats``)."""
    lines = []
    for key, label, unit in _SHOWN:
        value = stats.get(key)
        if value is None:
            continue
        if unit == "s":
            shown = f"{value:.3f} s"
        elif unit == "B":
            shown = f"{value} ({format_size(value)})"
        else:
            shown = str(value)
        lines.append(f"{label + ':':<19}{shown}")
    return lines
