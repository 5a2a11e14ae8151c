"""Structured logs: one JSON object per line on stderr (the journal keeps them as is).

Every line has ``time`` (ISO-8601, UTC), ``level``, ``event`` and the fields the caller
adds (``verb``, ``api``, ``duration_s``, ``status``, ``kind``, ``exit_code``,
``message``). Requests' bodies are never logged; messages go through
:func:`cryostash.redact.redact_text`, so no secret reaches a log line.
"""

from __future__ import annotations

import json
import logging
import sys
from datetime import UTC, datetime
from typing import Any

from cryostash.redact import redact_text

LOGGER_NAME = "cryostash.daemon"


class JsonLines(logging.Formatter):
    """A record as one JSON line: the record's ``fields`` (an ``extra``) and its event."""

    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "event": record.getMessage(),
        }
        fields = getattr(record, "fields", None)
        if isinstance(fields, dict):
            line.update(fields)
        if record.exc_info:
            line["traceback"] = self.formatException(record.exc_info)
        for key, value in line.items():
            if isinstance(value, str):
                line[key] = redact_text(value)
        return json.dumps(line, default=str)


def logger() -> logging.Logger:
    """The daemon's logger: JSON lines on stderr (set up once)."""
    log = logging.getLogger(LOGGER_NAME)
    if not log.handlers:
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(JsonLines())
        log.addHandler(handler)
        log.setLevel(logging.INFO)
        log.propagate = False
    return log


def emit(
    event: str, level: int = logging.INFO, error: BaseException | None = None, **fields: Any
) -> None:
    """Log ``event`` with ``fields`` (and the traceback of ``error``, if given)."""
    logger().log(level, event, extra={"fields": fields}, exc_info=error)
