"""The catalog: round trips, exact messages, blob references, concurrency.

Every test runs on a real SQLite file and on a private PostgreSQL server
(see ``tests/support/postgres.py``).
"""

from __future__ import annotations

import multiprocessing
import socket
import sqlite3
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from cryostash.catalog import Catalog, canonical_url, strip_credentials
from cryostash.errors import CatalogError, CheckpointExists, CheckpointNotFound, UsageError
from cryostash.types import CheckpointInfo, Status
from tests.support import postgres

STORE = "/srv/cryostash/store"
OTHER_STORE = "s3://bucket/other"


@pytest.fixture(scope="session")
def pg_server() -> Iterator[postgres.PostgresServer]:
    yield from postgres.session_server()


@pytest.fixture(params=["sqlite", "postgresql"])
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'catalog.db'}"
    server: postgres.PostgresServer = request.getfixturevalue("pg_server")
    return server.create_database()


@pytest.fixture
def cat(db_url: str) -> Iterator[Catalog]:
    catalog = Catalog(db_url)
    yield catalog
    catalog.close()


def reserve(cat: Catalog, name: str = "cp1", target: str = "web", **kw: Any) -> CheckpointInfo:
    args: dict[str, Any] = {
        "store_url": STORE,
        "target": target,
        "name": name,
        "host": "host-a",
        "engine": "criu",
        "labels": {},
        "lease_seconds": 600,
    }
    args.update(kw)
    return cat.reserve(**args)


def commit(cat: Catalog, info: CheckpointInfo, **kw: Any) -> CheckpointInfo:
    args: dict[str, Any] = {
        "size_bytes": 1234,
        "stats": {"frozen_time_us": 42},
        "engine_version": "4.2",
        "manifest_digest": "ab" * 32,
    }
    args.update(kw)
    return cat.commit(info.id, **args)


def assert_utc(value: datetime | None) -> None:
    assert value is not None
    assert value.tzinfo is not None
    assert value.utcoffset() == timedelta(0)


# -- checkpoints ---------------------------------------------------------------------


def test_reserve_commit_get_list_round_trip(cat: Catalog) -> None:
    before = datetime.now(UTC)
    pending = reserve(cat, labels={"app": "web"})
    assert pending.status is Status.PENDING
    assert (pending.store_url, pending.target, pending.name) == (STORE, "web", "cp1")
    assert pending.host == "host-a" and pending.engine == "criu"
    assert pending.engine_version is None and pending.committed_at is None
    assert pending.size_bytes == 0 and dict(pending.stats) == {}
    assert_utc(pending.created_at)
    assert_utc(pending.lease_expires_at)
    assert pending.lease_expires_at is not None
    assert before - timedelta(seconds=5) <= pending.created_at <= datetime.now(UTC)
    assert pending.lease_expires_at - pending.created_at == timedelta(seconds=600)

    # pending rows are invisible to readers
    with pytest.raises(CheckpointNotFound):
        cat.get(STORE, "web", "cp1")
    assert cat.list(STORE) == []
    assert cat.list(None) == []

    done = commit(cat, pending)
    assert done.id == pending.id
    assert done.status is Status.COMMITTED
    assert_utc(done.committed_at)
    assert done.lease_expires_at is None
    assert done.size_bytes == 1234
    assert done.engine_version == "4.2"
    assert dict(done.stats) == {"frozen_time_us": 42}
    assert cat.get(STORE, "web", "cp1") == done
    assert cat.get_by_id(done.id) == done
    assert cat.manifest_digest(done.id) == "ab" * 32
    assert cat.list(STORE) == [done]
    assert cat.list(STORE, "web") == [done]
    assert cat.list(STORE, "db") == []
    assert cat.list(None) == [done]
    again = cat.get(STORE, "web", "cp1")
    assert again.created_at == pending.created_at  # microseconds survive the round trip


def test_duplicate_reserve_says_who_holds_the_name(cat: Catalog) -> None:
    """A pending name: who creates it and since when; a committed one: Docker's message."""
    first = cat.reserve(
        store_url=STORE, target="web", name="cp1", host="host-a", engine="criu",
        lease_seconds=600, owner_pid=4242, owner_start="boot/1/99",
    )
    assert (first.owner_pid, first.owner_start, first.owner_lock) == (4242, "boot/1/99", None)
    with pytest.raises(CheckpointExists) as err:
        reserve(cat, host="host-b")
    since = first.created_at.isoformat(timespec="seconds")
    assert str(err.value) == (
        "checkpoint with name cp1 already exists for container web "
        f"(being created by host host-a, PID 4242, since {since})"
    )
    assert isinstance(err.value, FileExistsError)
    assert err.value.holder == first
    assert cat.renew_lease(first.id, 600, lock="/scratch/create-web-cp1-x").owner_lock == (
        "/scratch/create-web-cp1-x"
    )
    done = commit(cat, first)
    assert (done.owner_pid, done.owner_start, done.owner_lock) == (None, None, None)
    with pytest.raises(CheckpointExists) as err:
        reserve(cat, host="host-b")
    assert str(err.value) == "checkpoint with name cp1 already exists for container web"
    assert err.value.holder == done
    # the same (target, name) in another store, or another target, is another checkpoint
    reserve(cat, store_url=OTHER_STORE)
    reserve(cat, target="db")


def test_get_missing_has_dockers_message(cat: Catalog) -> None:
    with pytest.raises(CheckpointNotFound) as err:
        cat.get(STORE, "web", "nope")
    assert str(err.value) == "checkpoint nope does not exist for container web"
    assert isinstance(err.value, FileNotFoundError)


def test_list_sorted_and_filtered(cat: Catalog) -> None:
    for target, name in [("web", "b"), ("db", "z"), ("web", "a"), ("db", "a1")]:
        commit(cat, reserve(cat, name=name, target=target))
    commit(cat, reserve(cat, name="a0", target="web", store_url=OTHER_STORE))
    reserve(cat, name="pending", target="web")
    assert [(i.target, i.name) for i in cat.list(STORE)] == [
        ("db", "a1"),
        ("db", "z"),
        ("web", "a"),
        ("web", "b"),
    ]
    assert [i.name for i in cat.list(STORE, "web")] == ["a", "b"]
    assert [i.name for i in cat.list(OTHER_STORE)] == ["a0"]
    assert [(i.target, i.name) for i in cat.list(None, "web")] == [
        ("web", "a"),
        ("web", "a0"),
        ("web", "b"),
    ]


def test_labels_and_stats_json_round_trip(cat: Catalog) -> None:
    labels = {"app": "web", "owner": "équipe", "empty": ""}
    stats = {
        "dump": {"frozen_time_us": 1_234_567, "pages_written": 2**40},
        "ratio": 0.25,
        "ok": True,
        "nothing": None,
        "files": ["core-1.img", "pages-1.img"],
    }
    info = commit(cat, reserve(cat, labels=labels), stats=stats)
    got = cat.get(STORE, "web", "cp1")
    assert dict(got.labels) == labels
    assert dict(got.stats) == stats
    assert got == info
    assert got.summary()["labels"] == labels


def test_store_url_credentials_are_never_stored(cat: Catalog, db_url: str) -> None:
    secret_url = "s3://AKIAEXAMPLE:s3cr3t-value@bucket/prefix/?endpoint_url=x&secret=zzz"
    info = reserve(cat, store_url=secret_url)
    assert info.store_url == "s3://bucket/prefix?endpoint_url=x"
    commit(cat, info)
    cat.add_blob_refs(info.id, {"d1": 1})
    cat.record_event(host="h", action="checkpoint", target="web", name="cp1", store_url=secret_url)
    # the same store, given with other (or no) credentials, is the same key
    assert cat.get("s3://o:c@bucket/prefix/?endpoint_url=x&token=t", "web", "cp1").id == info.id
    assert cat.known_blobs("s3://bucket/prefix?endpoint_url=x", ["d1"]) == {"d1"}
    if db_url.startswith("sqlite"):
        raw = Path(db_url.removeprefix("sqlite:///"))
        with sqlite3.connect(raw) as conn:
            conn.execute("PRAGMA wal_checkpoint(FULL)")
            dump = "\n".join(conn.iterdump())
        assert "s3cr3t" not in dump and "AKIAEXAMPLE" not in dump and "zzz" not in dump


def test_url_helpers(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    # One canonical form for a store (the catalog's key and Store.url alike): a local
    # root, plain or file://, is an absolute path.
    monkeypatch.chdir(tmp_path)
    assert strip_credentials("s3://k:s@bucket/p") == "s3://bucket/p"
    assert strip_credentials("sftp://alice@host:22/srv") == "sftp://host:22/srv"
    assert strip_credentials("/var/lib/x") == "/var/lib/x"
    assert strip_credentials("simplecache::s3://k:s@b/p") == "simplecache::s3://b/p"
    assert strip_credentials("gs://b/p?token=abc&project=q") == "gs://b/p?project=q"
    assert canonical_url("/srv/store/") == "/srv/store"
    assert canonical_url("/") == "/"
    assert canonical_url("memory://") == "memory://"
    assert canonical_url("memory://x/") == "memory://x"
    assert canonical_url("file:///") == "/"
    assert canonical_url("file:///srv/s//") == "/srv/s"
    assert canonical_url("s3://bucket/") == "s3://bucket"
    assert canonical_url("s3://k:s@bucket/p/?x=1#f") == "s3://bucket/p?x=1#f"
    assert canonical_url("relative/store/") == str(tmp_path / "relative/store")
    for url in ["s3://k:s@b/p/?token=1&a=b c", "memory://", "/", "file:///x/", "a::s3://u@b/"]:
        once = canonical_url(url)
        assert canonical_url(once) == once  # idempotent


def test_commit_and_abort_rules(cat: Catalog) -> None:
    with pytest.raises(CheckpointNotFound):
        cat.commit(999, size_bytes=0, stats={}, engine_version=None, manifest_digest="x")
    info = reserve(cat)
    commit(cat, info)
    with pytest.raises(CatalogError, match="already committed"):
        commit(cat, info)
    with pytest.raises(CatalogError, match="not pending"):
        cat.abort(info.id)
    assert cat.abort(12345) == []  # idempotent: nothing to abort
    with pytest.raises(CheckpointNotFound):
        cat.remove(12345)
    with pytest.raises(CheckpointNotFound):
        cat.add_blob_refs(12345, {"d": 1})


def test_abort_frees_the_name_and_ids_are_never_reused(cat: Catalog) -> None:
    first = reserve(cat)
    assert cat.abort(first.id) == []
    second = reserve(cat)  # the name can be taken again
    assert second.id > first.id
    # a stale id (the aborted reservation) never designates the new row
    with pytest.raises(CheckpointNotFound):
        cat.commit(first.id, size_bytes=0, stats={}, engine_version=None, manifest_digest="x")
    assert cat.get_by_id(second.id).status is Status.PENDING


def test_pending_and_leases(cat: Catalog) -> None:
    short = reserve(cat, name="short", lease_seconds=0)
    long = reserve(cat, name="long", lease_seconds=3600)
    commit(cat, reserve(cat, name="done"))
    assert [i.name for i in cat.pending(STORE)] == ["short", "long"]
    expired = cat.pending(STORE, expired_at=datetime.now(UTC) + timedelta(seconds=1))
    assert [i.id for i in expired] == [short.id]
    renewed = cat.renew_lease(short.id, 7200)
    assert renewed.lease_expires_at is not None and long.lease_expires_at is not None
    assert renewed.lease_expires_at > long.lease_expires_at
    assert cat.pending(STORE, expired_at=datetime.now(UTC) + timedelta(seconds=1)) == []
    assert cat.pending(OTHER_STORE) == []


# -- blob references -------------------------------------------------------------------


def test_remove_returns_only_digests_unique_to_it(cat: Catalog) -> None:
    a = reserve(cat, name="a")
    b = reserve(cat, name="b")
    assert cat.add_blob_refs(a.id, {"shared": 10, "a1": 1, "a2": 2}) == {"shared", "a1", "a2"}
    # a is pending: its creator may still be uploading "shared", so b must see to it too
    assert cat.add_blob_refs(b.id, {"shared": 10, "b1": 3}) == {"shared", "b1"}
    commit(cat, a)
    commit(cat, b)
    assert cat.known_blobs(STORE, ["shared", "a1", "b1", "zz"]) == {"shared", "a1", "b1"}
    assert cat.referenced_digests(STORE) == {"shared", "a1", "a2", "b1"}

    assert cat.remove(a.id) == ["a1", "a2"]
    with pytest.raises(CheckpointNotFound):
        cat.get(STORE, "web", "a")
    assert cat.known_blobs(STORE, ["shared", "a1", "a2", "b1"]) == {"shared", "b1"}
    assert cat.remove(b.id) == ["b1", "shared"]
    assert cat.known_blobs(STORE, ["shared", "b1"]) == set()
    assert cat.referenced_digests(STORE) == set()


def test_add_blob_refs_is_idempotent(cat: Catalog) -> None:
    info = reserve(cat)
    blobs = {f"{i:064x}": i for i in range(1200)}  # more than one IN-list chunk
    assert cat.add_blob_refs(info.id, blobs) == set(blobs)
    assert cat.add_blob_refs(info.id, blobs) == set(blobs)  # still not vouched for
    assert cat.add_blob_refs(info.id, {}) == set()
    assert cat.known_blobs(STORE, blobs) == set(blobs)
    assert sorted(cat.abort(info.id)) == sorted(blobs)


def test_only_committed_checkpoints_vouch_for_their_blobs(cat: Catalog) -> None:
    """A create must not skip a chunk that only a pending create references: that create
    may fail before (or without ever) uploading it, and its undo keeps the row for the
    second create, which would then commit a checkpoint naming a missing blob."""
    first = reserve(cat, name="first")
    assert cat.add_blob_refs(first.id, {"x": 1, "y": 1}) == {"x", "y"}
    second = reserve(cat, name="second")
    assert cat.add_blob_refs(second.id, {"x": 1, "z": 1}) == {"x", "z"}
    assert cat.abort(first.id) == ["y"]  # x survives for the second, which uploads it
    commit(cat, second)
    third = reserve(cat, name="third")
    assert cat.add_blob_refs(third.id, {"x": 1, "z": 1, "w": 1}) == {"w"}


def test_pending_references_protect_blobs(cat: Catalog) -> None:
    done = reserve(cat, name="done")
    cat.add_blob_refs(done.id, {"x": 1, "y": 1})
    commit(cat, done)
    pending = reserve(cat, name="pending")
    cat.add_blob_refs(pending.id, {"x": 1})
    assert cat.remove(done.id) == ["y"]  # x is still used by the pending row
    assert cat.known_blobs(STORE, ["x", "y"]) == {"x"}
    assert cat.abort(pending.id) == ["x"]
    assert cat.known_blobs(STORE, ["x"]) == set()


def test_references_are_per_store(cat: Catalog) -> None:
    here = reserve(cat, name="here")
    there = reserve(cat, name="there", store_url=OTHER_STORE)
    cat.add_blob_refs(here.id, {"d": 1})
    cat.add_blob_refs(there.id, {"d": 1})
    assert cat.remove(here.id) == ["d"]  # the other store's copy is another blob
    assert cat.known_blobs(STORE, ["d"]) == set()
    assert cat.known_blobs(OTHER_STORE, ["d"]) == {"d"}


# -- events --------------------------------------------------------------------------------


def test_events_round_trip(cat: Catalog) -> None:
    before = datetime.now(UTC)
    first = cat.record_event(
        host="h1", action="checkpoint", target="web", name="a", store_url=STORE,
        detail={"size_bytes": 10, "nested": {"k": [1, 2]}},
    )  # fmt: skip
    assert_utc(first.time)
    assert before - timedelta(seconds=5) <= first.time <= datetime.now(UTC)
    assert dict(first.detail) == {"size_bytes": 10, "nested": {"k": [1, 2]}}
    cat.record_event(host="h2", action="restore", target="db", name="b", store_url=None)
    cat.record_event(host="h1", action="delete", target="web", name="a", store_url=STORE)
    all_events = cat.events()
    assert [e.action for e in all_events] == ["checkpoint", "restore", "delete"]
    assert all_events[0] == first
    assert [e.id for e in all_events] == sorted(e.id for e in all_events)
    assert [e.action for e in cat.events("web")] == ["checkpoint", "delete"]
    assert [e.action for e in cat.events(limit=2)] == ["restore", "delete"]  # newest 2
    assert [e.action for e in cat.events("web", limit=1)] == ["delete"]
    assert cat.events("nobody") == []
    assert all_events[1].detail == {}
    assert all_events[0].as_dict()["detail"] == {"size_bytes": 10, "nested": {"k": [1, 2]}}


# -- errors ----------------------------------------------------------------------------------


def test_unreachable_database_is_a_clear_catalog_error() -> None:
    with socket.socket() as sock:  # a port nobody listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    url = f"postgresql+psycopg://alice:hunter2@127.0.0.1:{port}/cryo"
    with pytest.raises(CatalogError) as err:
        Catalog(url)
    message = str(err.value)
    assert message.startswith(f"catalog postgresql+psycopg://alice:***@127.0.0.1:{port}/cryo: ")
    assert "hunter2" not in message


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("not a url", "unsupported catalog URL not a url"),
        ("nosuchdb://u:hunter2@h/db", "unsupported catalog URL scheme nosuchdb"),
        ("sqlite+nosuchdriver:///x.db", "unknown driver 'sqlite\\+nosuchdriver'"),
    ],
)
def test_bad_urls(url: str, expected: str) -> None:
    """A URL that names no catalog cryostash can open is a usage error (exit 2)."""
    with pytest.raises(UsageError, match=expected) as err:
        Catalog(url)
    assert "hunter2" not in str(err.value)


def test_unusable_sqlite_path(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("")
    with pytest.raises(CatalogError, match=r"^catalog sqlite:///"):
        Catalog(f"sqlite:///{blocker / 'sub' / 'catalog.db'}")
    (tmp_path / "dir.db").mkdir()
    with pytest.raises(CatalogError, match="unable to open database file"):
        Catalog(f"sqlite:///{tmp_path / 'dir.db'}")


def test_sqlite_pragmas(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'deep' / 'er' / 'catalog.db'}"  # folders are created
    cat = Catalog(url)
    try:
        with cat._engine.connect() as conn:
            assert conn.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
            assert conn.exec_driver_sql("PRAGMA foreign_keys").scalar() == 1
            assert conn.exec_driver_sql("PRAGMA busy_timeout").scalar() == 30000
    finally:
        cat.close()


# -- concurrency -------------------------------------------------------------------------------


def test_threads_share_one_catalog(cat: Catalog) -> None:
    def work(i: int) -> int:
        info = reserve(cat, name=f"t{i}")
        cat.add_blob_refs(info.id, {"shared": 1, f"own{i}": 1})
        commit(cat, info)
        cat.record_event(host="h", action="checkpoint", target="web", name=f"t{i}", store_url=STORE)
        return info.id

    with ThreadPoolExecutor(max_workers=8) as pool:
        ids = list(pool.map(work, range(32)))
    assert len(set(ids)) == 32
    assert len(cat.list(STORE)) == 32
    assert len(cat.events("web")) == 32
    assert cat.referenced_digests(STORE) == {"shared"} | {f"own{i}" for i in range(32)}


def _race_reserve(url: str, barrier: Any, results: Any, index: int) -> None:
    try:
        cat = Catalog(url)
        barrier.wait(timeout=60)
        try:
            info = cat.reserve(
                store_url=STORE, target="web", name="race", host=f"h{index}",
                engine="criu", labels={}, lease_seconds=60,
            )  # fmt: skip
            results.put(("won", info.host))
        except CheckpointExists as exc:
            results.put(("exists", str(exc)))
        finally:
            cat.close()
    except BaseException as exc:  # report anything else to the parent
        results.put(("error", f"{type(exc).__name__}: {exc}"))


def test_concurrent_reserve_exactly_one_wins(db_url: str) -> None:
    Catalog(db_url).close()  # created once; the race is on the reservation
    ctx = multiprocessing.get_context("spawn")
    n = 8
    barrier = ctx.Barrier(n)
    results = ctx.Queue()
    procs = [
        ctx.Process(target=_race_reserve, args=(db_url, barrier, results, i)) for i in range(n)
    ]
    for proc in procs:
        proc.start()
    outcomes = [results.get(timeout=120) for _ in procs]
    for proc in procs:
        proc.join(timeout=60)
    kinds = sorted(kind for kind, _ in outcomes)
    assert kinds == ["exists"] * (n - 1) + ["won"], outcomes
    winner = next(d for k, d in outcomes if k == "won")
    for kind, detail in outcomes:
        if kind == "exists":  # the losers are told who holds the name
            assert detail.startswith(
                "checkpoint with name race already exists for container web "
                f"(being created by host {winner}, since "
            ), detail
    cat = Catalog(db_url)
    try:
        (row,) = cat.pending(STORE)
        winner = next(d for k, d in outcomes if k == "won")
        assert row.host == winner
    finally:
        cat.close()


def _churn(url: str, worker: int, rounds: int, results: Any) -> None:
    """Reserve, reference the shared digest, check it is recorded, remove; repeat."""
    errors: list[str] = []
    try:
        cat = Catalog(url)
        try:
            for i in range(rounds):
                info = cat.reserve(
                    store_url=STORE, target="web", name=f"w{worker}-{i}", host="h",
                    engine="criu", labels={}, lease_seconds=60,
                )  # fmt: skip
                cat.add_blob_refs(info.id, {"shared": 1, f"own-{worker}-{i}": 1})
                # while our reference exists, nobody may drop the shared blob's row
                if "shared" not in cat.known_blobs(STORE, ["shared"]):
                    errors.append(f"round {i}: shared blob row vanished while referenced")
                orphans = cat.remove(info.id)
                if f"own-{worker}-{i}" not in orphans:
                    errors.append(f"round {i}: own blob not returned: {orphans}")
        finally:
            cat.close()
    except BaseException as exc:
        errors.append(f"{type(exc).__name__}: {exc}")
    results.put(errors)


def test_remove_and_add_blob_refs_race(db_url: str) -> None:
    Catalog(db_url).close()
    ctx = multiprocessing.get_context("spawn")
    results = ctx.Queue()
    procs = [ctx.Process(target=_churn, args=(db_url, w, 25, results)) for w in range(4)]
    started = time.monotonic()
    for proc in procs:
        proc.start()
    errors = [e for _ in procs for e in results.get(timeout=300)]
    for proc in procs:
        proc.join(timeout=60)
    assert errors == []
    assert time.monotonic() - started < 300
    cat = Catalog(db_url)
    try:
        assert cat.referenced_digests(STORE) == set()
        assert cat.known_blobs(STORE, ["shared"]) == set()
    finally:
        cat.close()
