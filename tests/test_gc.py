"""gc: abandoned creates are finished or undone, unreferenced objects removed after the
grace period, never a blob a checkpoint (pending ones included) refers to.

In-process and fast: the engine is the fake one, and a "crash" at a phase is simulated
by a hooks observer raising at that phase while the failed create's clean-up is disabled (the
state left is the one a SIGKILL leaves, except scratch; ``test_crash.py`` kills real
processes running real CRIU). Every test runs on local+SQLite and S3+PostgreSQL.
"""

from __future__ import annotations

import fcntl
import os
import threading
from datetime import UTC, datetime, timedelta
from pathlib import Path

import blake3
import pytest

from cryostash import CatalogError, CheckpointExists, collect_garbage, hooks, verify_store
from cryostash.catalog.maintenance import CatalogMaintenance
from cryostash.store import Manifest
from tests.support.fake_engine import FakeManager, make_image
from tests.support.processes import wait_until
from tests.support.setups import Setup, setup_fixture  # noqa: F401

LATER = datetime.now(UTC) + timedelta(days=3)  # leases expired, every object old


class SimulatedCrash(BaseException):
    """Raised at a phase instead of SIGKILL."""


def crash_create(
    mgr: FakeManager, monkeypatch: pytest.MonkeyPatch, phase: str, image: Path, name: str = "cp"
) -> None:
    """Run a create that 'crashes' at ``phase``, leaving what a crash leaves in the store
    and the catalog (the failed create's clean-up is switched off)."""

    def crash_point(at: str) -> None:  # a cryostash.hooks observer
        if at == phase:
            raise SimulatedCrash(at)

    with monkeypatch.context() as m, hooks.observe(crash_point):
        m.setattr("cryostash.repository.cleanup.undo_create", lambda *args: None)
        with pytest.raises(SimulatedCrash):
            mgr.create("app", name, locator=str(image))


def store_objects(setup: Setup) -> list[str]:
    return [f for f in setup.raw.files() if f.startswith(("blobs/", "checkpoints/"))]


def referenced_objects(mgr: FakeManager) -> list[str]:
    """What the store should hold: the manifests of listed checkpoints and their blobs."""
    store = mgr.store()
    wanted = []
    for info in mgr.list():
        wanted.append(f"checkpoints/{info.target}/{info.name}/manifest.json")
        manifest = Manifest.from_bytes(store.manifests.read(info.target, info.name))
        wanted += [f"blobs/{d[:2]}/{d}" for d in manifest.blob_digests]
    return sorted(set(wanted))


@pytest.mark.parametrize(
    ("phase", "outcome"),
    [
        ("after-dump", "aborted"),
        ("mid-upload", "aborted"),
        ("after-upload", "aborted"),
        ("after-manifest", "committed"),
    ],
)
def test_abandoned_create_is_kept_while_leased_then_settled(
    setup: Setup, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, phase: str, outcome: str
) -> None:
    make_image(tmp_path / "img")
    make_image(tmp_path / "older", seed=7)  # shares one file (and so one blob) with img
    with setup.manager(FakeManager) as mgr:
        mgr.create("app", "other", locator=str(tmp_path / "older"))
        crash_create(mgr, monkeypatch, phase, tmp_path / "img")
        before = store_objects(setup)
        assert [i.name for i in mgr.list()] == ["other"]
        assert verify_store(mgr.repository, read_data=True).ok

        # The lease still runs: gc with no grace at all touches nothing of it.
        report = collect_garbage(mgr.repository, grace_s=0)
        assert report.ok and not report.committed and not report.aborted
        assert report.blobs_deleted == 0
        assert set(before) <= set(store_objects(setup)) | {
            p for p in before if p.endswith(".tmp")
        }
        with pytest.raises(CheckpointExists):  # the name stays reserved meanwhile
            mgr.create("app", "cp", locator=str(tmp_path / "img"))

        report = collect_garbage(mgr.repository, grace_s=0, now=LATER)
        assert report.ok, report.errors
        assert (report.committed, report.aborted) == (
            (("app/cp",), ()) if outcome == "committed" else ((), ("app/cp",))
        )
        again = collect_garbage(mgr.repository, grace_s=0, now=LATER)
        assert again.ok and not again.changed, again.as_dict()
        assert store_objects(setup) == referenced_objects(mgr)
        assert verify_store(mgr.repository, read_data=True).ok
        actions = [e.action for e in mgr.events()]
        assert actions[-1] == ("gc-commit" if outcome == "committed" else "gc-abort")

        if outcome == "committed":
            mgr.remove("app", "cp")
        mgr.create("app", "cp", locator=str(tmp_path / "img"))
        assert verify_store(mgr.repository, read_data=True).ok


def test_incomplete_manifest_with_a_missing_blob_is_undone(
    setup: Setup, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    files = make_image(tmp_path / "img")
    with setup.manager(FakeManager) as mgr:
        mgr.create("app", "keep", locator=str(tmp_path / "img"))
        crash_create(mgr, monkeypatch, "after-manifest", tmp_path / "img")
        mgr.remove("app", "keep")  # the pending row still refers to the blobs: kept
        victim = blake3.blake3(files["core.img"]).hexdigest()
        setup.raw.remove(setup.raw.blob(victim))
        report = collect_garbage(mgr.repository, grace_s=0, now=LATER)
        assert report.aborted == ("app/cp",) and report.committed == ()
        assert store_objects(setup) == []
        assert mgr.catalog.pending() == [] and mgr.list() == []


def test_unreferenced_objects_wait_for_the_grace_period(setup: Setup, tmp_path: Path) -> None:
    make_image(tmp_path / "img")
    with setup.manager(FakeManager) as mgr:
        mgr.create("app", "cp", locator=str(tmp_path / "img"))
        digest = blake3.blake3(b"nobody refers to me").hexdigest()
        setup.raw.put(setup.raw.blob(digest), b"nobody refers to me")
        setup.raw.put("blobs/ab/.abcdef.0123456789ab.tmp", b"interrupted")
        setup.raw.put("checkpoints/app/gone/partial.bin", b"folder without manifest")

        young = collect_garbage(mgr.repository)  # default grace: 24 h
        assert young.ok and not young.changed and young.kept_young == 3
        dry = collect_garbage(mgr.repository, grace_s=0, dry_run=True)
        assert dry.blobs_deleted == 1 and len(dry.strays_deleted) == 2
        assert setup.raw.exists(setup.raw.blob(digest)), "dry run deleted something"

        old = collect_garbage(mgr.repository, grace_s=3600, now=LATER)
        assert old.blobs_deleted == 1 and old.bytes_deleted == len(b"nobody refers to me")
        assert sorted(old.strays_deleted) == [
            "blobs/ab/.abcdef.0123456789ab.tmp",
            "checkpoints/app/gone/partial.bin",
        ]
        assert store_objects(setup) == referenced_objects(mgr)
        assert verify_store(mgr.repository, read_data=True).ok


def test_untracked_incomplete_manifests_go_after_the_grace_period_with_their_blobs(
    setup: Setup, tmp_path: Path
) -> None:
    make_image(tmp_path / "a", seed=1)
    make_image(tmp_path / "b", seed=2, shared=b"only b has this")
    make_image(tmp_path / "c", seed=3, shared=b"only c has this")
    with setup.manager(FakeManager) as mgr:
        mgr.create("app", "tracked", locator=str(tmp_path / "a"))
        mgr.create("app", "orphan", locator=str(tmp_path / "b"))
        mgr.create("app", "garbled", locator=str(tmp_path / "c"))
        # Untracked (no row), one missing a blob, one not a valid manifest.
        manifest = mgr.store().manifests.load("app", "orphan").manifest
        pages = next(f for f in manifest.files if f.path == "pages.img")
        for name in ("orphan", "garbled"):
            mgr.catalog.remove(mgr.get("app", name).id)
        setup.raw.remove(setup.raw.blob(pages.blobs[0]))
        setup.raw.remove(setup.raw.manifest("app", "garbled"))
        setup.raw.put(setup.raw.manifest("app", "garbled"), b'{"truncated":')

        young = collect_garbage(mgr.repository, grace_s=3600)
        assert young.manifests_deleted == () and young.adopted == ()
        assert young.blobs_deleted == 0
        assert verify_store(mgr.repository).untracked == (
            ("app", "garbled"), ("app", "orphan"),
        )  # fmt: skip

        old = collect_garbage(mgr.repository, grace_s=3600, now=LATER)
        assert old.manifests_deleted == ("app/garbled", "app/orphan") and old.adopted == ()
        assert old.blobs_deleted == 5  # core and shared of b (its pages gone), three of c
        assert store_objects(setup) == referenced_objects(mgr)


def test_untracked_complete_manifests_are_adopted_never_deleted(
    setup: Setup, tmp_path: Path
) -> None:
    # A catalog restored from an older copy: it knows "old" only; "new" was made since.
    make_image(tmp_path / "a", seed=1)
    make_image(tmp_path / "b", seed=2, shared=b"only b has this")
    with setup.manager(FakeManager) as mgr:
        mgr.create("app", "old", locator=str(tmp_path / "a"))
        mgr.create("app", "new", locator=str(tmp_path / "b"), labels={"k": "v"})
        before = mgr.get("app", "new")
        mgr.catalog.remove(before.id)
        objects = store_objects(setup)

        dry = collect_garbage(mgr.repository, grace_s=0, now=LATER, dry_run=True)
        assert dry.adopted == ("app/new",) and dry.manifests_deleted == ()
        assert dry.blobs_deleted == 0 and [i.name for i in mgr.list()] == ["old"]

        report = collect_garbage(mgr.repository, grace_s=0, now=LATER)
        assert report.adopted == ("app/new",) and report.ok
        assert report.manifests_deleted == () and report.blobs_deleted == 0
        assert store_objects(setup) == objects
        again = mgr.get("app", "new")
        assert (again.created_at, again.labels) == (before.created_at, before.labels)
        assert mgr.events()[-1].action == "gc-adopt"
        assert verify_store(mgr.repository, read_data=True).ok
        assert not collect_garbage(mgr.repository, grace_s=0, now=LATER).changed


def test_a_lost_catalog_stops_gc_until_it_is_rebuilt(setup: Setup, tmp_path: Path) -> None:
    make_image(tmp_path / "img")
    with setup.manager(FakeManager) as mgr:
        mgr.create("app", "cp", locator=str(tmp_path / "img"))
        mgr.catalog.remove(mgr.get("app", "cp").id)  # as if the database were lost
        before = store_objects(setup)
        for dry_run in (True, False):
            with pytest.raises(CatalogError, match="run `cryostash catalog rebuild` first"):
                collect_garbage(mgr.repository, grace_s=0, now=LATER, dry_run=dry_run)
        assert store_objects(setup) == before


def test_live_creates_keep_their_folders_and_temporary_files(
    setup: Setup, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    make_image(tmp_path / "img")
    with setup.manager(FakeManager) as mgr:
        crash_create(mgr, monkeypatch, "after-upload", tmp_path / "img")
        setup.raw.put("checkpoints/app/cp/.manifest.json.0123456789ab.tmp", b"{")
        report = collect_garbage(mgr.repository, grace_s=0)  # lease running: a live create
        assert report.strays_deleted == ()
        assert setup.raw.exists("checkpoints/app/cp/.manifest.json.0123456789ab.tmp")
        report = collect_garbage(mgr.repository, grace_s=0, now=LATER)
        assert report.aborted == ("app/cp",)
        assert report.strays_deleted == ("checkpoints/app/cp/.manifest.json.0123456789ab.tmp",)
        assert store_objects(setup) == []
    if setup.shape.startswith("local"):
        assert not (Path(setup.store_url) / "checkpoints" / "app").exists()


def test_stale_scratch_is_removed_live_and_foreign_folders_are_not(
    setup: Setup, tmp_path: Path
) -> None:
    scratch = setup.scratch
    dead = scratch / "create-app-cp-abcd1234"
    live = scratch / "restore-app-cp-efgh5678"
    foreign = scratch / "not-ours"
    for folder in (dead, live, foreign):
        (folder / "sub").mkdir(parents=True)
        (folder / "sub" / "pages.img").write_bytes(b"x")
    fd = os.open(live, os.O_RDONLY | os.O_DIRECTORY)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        with setup.manager(FakeManager) as mgr:
            dry = collect_garbage(mgr.repository, grace_s=0, dry_run=True)
            assert dry.scratch_deleted == (str(dead),) and dead.exists()
            young = collect_garbage(mgr.repository)
            assert young.scratch_deleted == () and dead.exists()
            report = collect_garbage(mgr.repository, grace_s=0)
        assert report.scratch_deleted == (str(dead),)
        assert not dead.exists() and live.exists() and foreign.exists()
    finally:
        os.close(fd)


@pytest.mark.parametrize("setup", ["s3-postgresql"], indirect=True)
def test_claimed_blobs_make_a_concurrent_reference_wait_and_reupload(
    setup: Setup, tmp_path: Path
) -> None:
    """PostgreSQL: while gc holds its claim on an unreferenced digest, a create that starts
    using the digest waits; it then learns the blob is gone (fresh) and uploads it again.
    (SQLite serialises every writer with ``BEGIN IMMEDIATE``, which gives the same.)"""
    from sqlalchemy import create_engine, text

    digest = blake3.blake3(b"contended").hexdigest()
    setup.raw.put(setup.raw.blob(digest), b"contended")
    with setup.manager(FakeManager) as gc_side, setup.manager(FakeManager) as creator:
        info = creator.catalog.reserve(
            store_url=creator.store().url, target="app", name="cp", host="b",
            engine="fake", labels={}, lease_seconds=600,
        )
        order: list[str] = []
        fresh: list[set[str]] = []

        def add_ref() -> None:
            fresh.append(creator.catalog.add_blob_refs(info.id, {digest: 9}))
            order.append("reference recorded")

        probe = create_engine(setup.catalog_url)
        waiting = text(
            "SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock' "
            "AND datname = current_database()"
        )
        maintenance = CatalogMaintenance(gc_side.catalog)
        with maintenance.claim_unreferenced(gc_side.store().url, [digest]) as free:
            assert free == {digest}
            thread = threading.Thread(target=add_ref)
            thread.start()
            with probe.connect() as conn:
                wait_until(lambda: conn.execute(waiting).scalar(), 30, "the create to wait")
            gc_side.store().chunks.delete(digest)
            order.append("blob deleted")
        thread.join(30)
        probe.dispose()
        assert order == ["blob deleted", "reference recorded"]
        assert fresh == [{digest}], "the create must know it has to upload the blob again"


def test_gc_with_a_catalog_restored_from_an_older_copy_deletes_no_checkpoint(
    tmp_path: Path,
) -> None:
    import sqlite3

    from tests.support import cli
    from tests.support.setups import make_setup

    setup = make_setup("local-sqlite", tmp_path)
    db = Path(setup.catalog_url.removeprefix("sqlite:///"))
    with setup.manager(FakeManager) as mgr:
        for i, name in enumerate(["monday", "tuesday"]):
            make_image(tmp_path / name, seed=i, shared=name.encode())
            mgr.create("app", name, locator=str(tmp_path / name))
            if name == "monday":  # last night's backup of the catalog
                with sqlite3.connect(db) as live, sqlite3.connect(tmp_path / "copy.db") as copy:
                    live.backup(copy)
    objects = store_objects(setup)
    for suffix in ("-wal", "-shm"):
        Path(f"{db}{suffix}").unlink(missing_ok=True)
    os.replace(tmp_path / "copy.db", db)  # the catalog restored from that copy
    done = cli.run(["gc", "--grace", "0s"], setup.cli_env())
    assert "adopted app/tuesday (complete, in the store but not in the catalog)" in done.stdout
    assert "remove untracked manifest" not in done.stdout
    assert store_objects(setup) == objects
    listed = cli.run(["ls", "app"], setup.cli_env()).stdout.split()
    assert listed == ["CHECKPOINT", "NAME", "monday", "tuesday"]
    assert cli.run(["verify", "--read-data"], setup.cli_env()).returncode == 0
