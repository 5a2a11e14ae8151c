"""The SQLite read path (``cryostash.catalog.reader``): the same answers as the catalog,
without SQLAlchemy, and never a reader where the full catalog must decide.

Real SQLite files written through the real :class:`Catalog`; the read verbs run as
subprocesses (``python -m cryostash``), as a user runs them.
"""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

import pytest

from cryostash.catalog import Catalog, schema
from cryostash.catalog.reader import SqliteReader, open_reader, sqlite_file
from cryostash.errors import CatalogError, CheckpointNotFound
from cryostash.types import CheckpointFilter
from tests.support import cli

STORE = "/srv/cryostash/store"
OTHER = "s3://bucket/other"


def _make(cat: Catalog, store: str, target: str, name: str, labels: dict[str, str],
          host: str = "host-a", commit: bool = True) -> None:
    info = cat.reserve(store_url=store, target=target, name=name, host=host, engine="criu",
                       labels=labels, lease_seconds=600)
    if commit:
        cat.commit(info.id, size_bytes=len(name), stats={"n": name, "deep": {"x": [1, 2]}},
                   engine_version="4.2", manifest_digest="ab" * 32)


def _fill(cat: Catalog, store: str) -> None:
    """Two stores (``store`` and OTHER), odd labels, several hosts, a pending row, events."""
    _make(cat, store, "web", "b", {"tier": "gold", 'we"ird': "ü ü"})
    _make(cat, store, "web", "a", {"tier": "silver"}, host="host-b")
    _make(cat, store, "db", "nightly", {})
    _make(cat, store, "web", "pending", {"tier": "gold"}, commit=False)
    _make(cat, OTHER, "web", "a", {"tier": "gold"})
    _make(cat, store, "Zeta", "ärger", {"tier": "gold"})
    for i, action in enumerate(("checkpoint", "restore", "delete", "restore")):
        cat.record_event(host="h", action=action, target="web" if i % 2 else "db",
                         name=f"n{i}", store_url=store if i else None, detail={"i": i})


@pytest.fixture
def filled(tmp_path: Path) -> Iterator[tuple[str, Catalog]]:
    """A catalog with two stores, odd labels, several hosts, a pending row, events."""
    url = f"sqlite:///{tmp_path / 'catalog.db'}"
    cat = Catalog(url)
    _fill(cat, STORE)
    yield url, cat
    cat.close()


def test_reader_answers_as_the_catalog(filled: tuple[str, Catalog]) -> None:
    url, cat = filled
    reader = open_reader(url)
    assert isinstance(reader, SqliteReader)
    since = cat.get(STORE, "web", "a").created_at
    cases = [
        CheckpointFilter(),
        CheckpointFilter(labels={"tier": "gold"}),
        CheckpointFilter(labels={'we"ird': "ü ü", "tier": "gold"}),
        CheckpointFilter(labels={"tier": "bronze"}),
        CheckpointFilter(host="host-b"),
        CheckpointFilter(since=since),
        CheckpointFilter(since=since.astimezone(timezone(timedelta(hours=2)))),
        CheckpointFilter(since=datetime.now(UTC) + timedelta(days=1)),
    ]
    for store in (STORE, OTHER, None):
        for target in (None, "web", "nobody"):
            for chosen in cases:
                listed = cat.list(store, target, chosen)
                assert reader.list(store, target, chosen) == listed
                assert reader.names(store, target, chosen) == [(i.target, i.name) for i in listed]
                assert cat.names(store, target, chosen) == [(i.target, i.name) for i in listed]
                if store is not None and target is not None:
                    assert reader.latest(store, target, chosen) == cat.latest(store, target, chosen)
    assert reader.get(STORE, "web", "b") == cat.get(STORE, "web", "b")
    assert reader.get(STORE + "/", "Zeta", "ärger") == cat.get(STORE, "Zeta", "ärger")
    with pytest.raises(CheckpointNotFound, match=r"^checkpoint pending does not exist for "
                       r"container web$"):
        reader.get(STORE, "web", "pending")  # pending rows are invisible, as in the catalog
    for target in (None, "web", "db", "nobody"):
        for limit in (None, 0, 1, 3, 10):
            assert reader.events(target, limit) == cat.events(target, limit)
    reader.close()


def test_no_reader_where_the_catalog_must_decide(tmp_path: Path) -> None:
    missing = tmp_path / "missing.db"
    assert open_reader(f"sqlite:///{missing}") is None
    assert not missing.exists()  # the reader never creates a catalog
    for url in ("sqlite://", "sqlite:///:memory:", f"sqlite:///{missing}?mode=ro",
                "postgresql+psycopg://u@h/db", f"sqlite:///file:{missing}"):
        assert open_reader(url) is None, url
    assert sqlite_file(f"sqlite:///{missing}") == missing
    old = tmp_path / "old.db"
    url = f"sqlite:///{old}"
    schema.upgrade(url, "0001")
    assert open_reader(url) is None  # outdated: the catalog refuses it, with its message
    empty = tmp_path / "empty.db"
    empty.write_bytes(b"")
    assert open_reader(f"sqlite:///{empty}") is None  # the catalog creates it at head


def test_a_broken_catalog_is_a_catalog_error(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'c.db'}"
    Catalog(url).close()
    reader = open_reader(url)
    assert reader is not None
    with sqlite3.connect(tmp_path / "c.db") as db:
        db.execute("DROP TABLE events")
    with pytest.raises(CatalogError, match=r"^catalog sqlite:///.*c\.db: no such table: events$"):
        reader.events()
    reader.close()


def _cli(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return cli.run(list(args), env, check=False)


def test_read_verbs_start_without_sqlalchemy(tmp_path: Path) -> None:
    """What keeps ``ls``, ``inspect``'s catalog part and ``events`` fast to start (the
    bench measures the time): they never import SQLAlchemy on a SQLite catalog at head,
    and they print what the catalog holds."""
    store = tmp_path / "store"
    store.mkdir()  # a store named explicitly must exist (reading verbs never create it)
    url = f"sqlite:///{tmp_path / 'read.db'}"
    with Catalog(url) as cat:
        _fill(cat, str(store))
    env = {**os.environ, "CRYOSTASH_CATALOG": url, "CRYOSTASH_STORE": str(store),
           "CRYOSTASH_CONFIG": os.devnull}
    probe = ("import runpy, sys\nsys.argv = ['cryostash', *sys.argv[1:]]\n"
             "try:\n    runpy.run_module('cryostash', run_name='__main__')\n"
             "finally:\n    print('SA' if 'sqlalchemy' in sys.modules else 'no SA',"
             " file=sys.stderr)\n")
    for args, expected in (
        (["ls"], "CONTAINER   CHECKPOINT NAME\nZeta        ärger\ndb          nightly\n"
                 "web         a\nweb         b\n"),
        (["ls", "web", "--label", "tier=gold"], "CHECKPOINT NAME\nb\n"),
        (["events", "--limit", "1"], None),
    ):
        done = subprocess.run([sys.executable, "-c", probe, *args], env=env,
                              capture_output=True, text=True, check=False)
        assert done.returncode == 0, done.stderr
        assert done.stderr.strip().endswith("no SA"), (args, done.stderr)
        if expected is not None:
            assert done.stdout == expected
    listed = json.loads(_cli(env, "ls", "--json").stdout)
    assert [(i["target"], i["name"]) for i in listed] == [
        ("Zeta", "ärger"), ("db", "nightly"), ("web", "a"), ("web", "b")]
    events = json.loads(_cli(env, "events", "--json").stdout)
    assert [e["detail"]["i"] for e in events] == [0, 1, 2, 3]
