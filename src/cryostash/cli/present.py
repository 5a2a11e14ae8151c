"""The one output path of the command line: every text a user sees leaves through this
module (:func:`say`, :func:`say_lines`, :func:`say_text`, :func:`print_json`,
:func:`write_log`); and the lines ``--print-stats`` prints after a create or a restore.
``tests/test_output_path.py`` finds any other ``print``/``sys.stdout.write``/
``sys.stderr.write`` in ``cli/``.

:func:`say` applies the redaction rule (:func:`cryostash.redact.redact_text`: no secret is
ever printed) and escapes control characters (:func:`cryostash.redact.escape`): text that
comes from a store, a catalog or another host (hosts, labels, kernel, versions, paths,
stats, error details) cannot move the cursor, clear the screen or forge a line. JSON
output (:func:`print_json`) is exact and does not go through it (JSON escapes control
characters itself).

The stats themselves (keys, units) are built and documented by
:mod:`cryostash.transfer.datapath`; this module only chooses which to show and how.
"""

from __future__ import annotations

import json
import re
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


def say_lines(lines: Iterable[object], *, err: bool = False) -> None:
    """Print many lines through :func:`clean` in one write (``ls`` of 100,000 names)."""
    stream = sys.stderr if err else sys.stdout
    stream.write("".join(clean(line) + "\n" for line in lines))


def print_json(value: Any) -> None:
    """Print ``value`` as indented JSON on stdout (exact: JSON escapes control characters)."""
    sys.stdout.write(json.dumps(value, indent=2, sort_keys=False, default=str))
    sys.stdout.write("\n")


#: What a log shown as is may not hold: control characters but tab and newline.
_LOG_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f\u2028\u2029\u202a-\u202e\u2066-\u2069]")


def say_text(text: str) -> None:
    """Print ``text`` of cryostash's own making (a completion script) as it is but for
    control characters: its newlines and tabs kept, any other escaped. Not redacted (it
    would mask ``key_nargs=0``): text that may hold a secret goes through
    :func:`write_log` or :func:`say`."""
    sys.stdout.write(_LOG_CONTROL.sub(lambda m: escape(m.group(0)), text))


def write_log(data: bytes) -> None:
    """Print a stored log (``inspect --log``) redacted, through :func:`say_text`,
    undecodable bytes replaced."""
    say_text(redact_text(data.decode("utf-8", errors="replace")))

def quiet_stdout() -> None:
    """Point stdout at /dev/null once its reader is gone (a closed pipe): Python would
    otherwise report the broken pipe again when it flushes stdout at exit."""
    import os

    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)
    except (OSError, ValueError):
        pass


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
