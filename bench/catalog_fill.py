"""Grow a SQLite catalog to N committed checkpoints, for the start-up rows of the bench.

Usage::

    .venv/bin/python bench/catalog_fill.py CATALOG.db COUNT

``CATALOG.db`` must be a cryostash catalog holding at least one committed checkpoint (the
bench uses the one its first create made): that row is the template. COUNT - (rows there)
copies of it are added under other targets and names (``bench-0000``/``cp-00000``: 100
checkpoints per target), each with its ``checkpoint`` event, in one transaction with
plain ``sqlite3`` (the catalog API would take minutes for 100,000 rows). The copies share
the template's store, stats, labels and manifest digest; they reference no chunk and have
no manifest in the store: ``ls`` and ``events`` see them, ``inspect`` works on the real
ones only.
"""

from __future__ import annotations

import json
import sqlite3
import sys
from datetime import datetime, timedelta
from pathlib import Path

PER_TARGET = 100
_COLUMNS = ("store_url", "target", "name", "status", "host", "engine", "engine_version",
            "created_at", "committed_at", "lease_expires_at", "size_bytes", "labels", "stats",
            "manifest_digest")


def copy_catalog(source: Path, target: Path) -> None:
    """Copy the SQLite catalog ``source`` (WAL included) to ``target`` (SQLite's backup)."""
    src, dst = sqlite3.connect(source), sqlite3.connect(target)
    try:
        src.backup(dst)
    finally:
        src.close()
        dst.close()


def fill_catalog(path: str, count: int) -> int:
    """Add copies of the first committed row of the SQLite catalog at ``path`` until it
    holds ``count`` committed checkpoints; returns how many were added."""
    db = sqlite3.connect(path)
    try:
        cols = ", ".join(_COLUMNS)
        template = db.execute(
            f"SELECT {cols} FROM checkpoints WHERE status = 'committed' ORDER BY id LIMIT 1"
        ).fetchone()
        if template is None:
            raise SystemExit(f"{path}: no committed checkpoint to copy")
        have = db.execute("SELECT count(*) FROM checkpoints WHERE status = 'committed'")
        missing = count - int(have.fetchone()[0])
        row = dict(zip(_COLUMNS, template, strict=True))
        start = datetime.fromisoformat(row["created_at"]) - timedelta(seconds=missing)
        rows, events = [], []
        for i in range(max(missing, 0)):
            when = (start + timedelta(seconds=i)).strftime("%Y-%m-%d %H:%M:%S.%f")
            target, name = f"bench-{i // PER_TARGET:04d}", f"cp-{i:06d}"
            rows.append({**row, "target": target, "name": name, "created_at": when,
                         "committed_at": when})
            events.append((when, row["host"], "checkpoint", target, name, row["store_url"],
                           json.dumps({"engine": "criu", "size_bytes": row["size_bytes"],
                                       "leave_running": True})))
        with db:
            marks = ", ".join(f":{c}" for c in _COLUMNS)
            db.executemany(f"INSERT INTO checkpoints ({cols}) VALUES ({marks})", rows)
            db.executemany(
                "INSERT INTO events (time, host, action, target, name, store_url, detail) "
                "VALUES (?, ?, ?, ?, ?, ?, ?)", events)
        return len(rows)
    finally:
        db.close()


if __name__ == "__main__":
    print(fill_catalog(sys.argv[1], int(sys.argv[2])))
