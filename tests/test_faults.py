"""The fault-injection layer, and what storage faults do to create, verify and restore.

Transient faults (connection resets, timeouts, torn writes) on a large share of the
store's data calls are survived by retries; permanent ones make the create fail with
nothing committed and nothing left in the store. Every case runs on a local store with
SQLite and on S3 (moto) with PostgreSQL, through ``faulty::<store URL>``. The checkpoint
engine is the fake one (exact bytes, no process): storage faults are what is tested.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass, replace
from pathlib import Path

import pytest

from cryostash import (
    CheckpointExists,
    CheckpointManager,
    StorageError,
    collect_garbage,
    verify_store,
)
from cryostash.objects import RetryPolicy
from cryostash.store import Store, codec
from tests.support.fake_engine import FakeManager, make_image, read_tree
from tests.support.faults import (
    Fault,
    FaultPlan,
    FaultyFileSystem,
    fail,
    hook,
    timeout,
    torn,
)
from tests.support.processes import ProcessTracker, read_counter, wait_until
from tests.support.setups import Setup, setup_fixture  # noqa: F401

#: The store calls that move data or commit something, on blobs and manifests.
DATA_OPS = frozenset({"put_file", "pipe_file", "cat_file", "open", "read", "rm_file"})
OBJECTS = r"/(blobs|checkpoints)/"
#: Writing a blob (one PUT: ``pipe_file``; a file upload: ``put_file``) and reading one.
BLOB_WRITES = frozenset({"put_file", "pipe_file"})
BLOB_READS = frozenset({"cat_file", "open", "read"})

# -- the layer itself ------------------------------------------------------------------------


@pytest.fixture
def faulty(tmp_path: Path) -> Iterator[tuple[Store, FaultPlan]]:
    """A store through ``faulty::`` that tries each call once: every injected fault
    reaches the caller (the retries are tested in ``test_store_wrappers.py``)."""
    plan = FaultPlan()
    once = RetryPolicy(attempts=1, backoff_s=0)
    yield Store(f"faulty::file://{tmp_path / 'root'}", {"plan": plan}, retry=once), plan


def test_error_instead_of_the_call_n_times(faulty: tuple[Store, FaultPlan]) -> None:
    store, plan = faulty
    store.manifests.write("t1", "n1", b"{}")
    plan.add(fail("cat_file", times=2))
    for _ in range(2):
        with pytest.raises(StorageError) as err:
            store.manifests.read("t1", "n1")
        assert err.value.transient and "injected reset of cat_file" in str(err.value)
    assert store.manifests.read("t1", "n1") == b"{}"
    assert plan.count("cat_file", OBJECTS) == 3  # (the store's configuration is read once)


def test_every_nth_call_after_some_and_per_path(faulty: tuple[Store, FaultPlan]) -> None:
    store, plan = faulty
    for name in ("n1", "n2"):
        store.manifests.write("t1", name, b"{}")
    plan.add(fail("cat_file", after=1, every=2, per_path=True, transient=False))
    outcomes = []
    for name in ("n1", "n2", "n1", "n2", "n1", "n2"):
        try:
            store.manifests.read("t1", name)
            outcomes.append("ok")
        except StorageError as exc:
            assert not exc.transient and "permission denied" in str(exc)
            outcomes.append("err")
    assert outcomes == ["ok", "ok", "err", "err", "ok", "ok"]


def test_before_callback_sleep_and_timeout(faulty: tuple[Store, FaultPlan]) -> None:
    store, plan = faulty
    seen: list[tuple[str, str]] = []
    plan.add(hook("pipe_file", lambda op, path: seen.append((op, path)), sleep=0.01))
    store.manifests.write("t1", "n1", b"{}")
    assert seen and seen[0][0] == "pipe_file" and seen[0][1].endswith("t1/n1/manifest.json")
    plan.clear()
    plan.add(timeout("cat_file", 0.01, times=1))
    with pytest.raises(StorageError) as err:
        store.manifests.read("t1", "n1")
    assert err.value.transient and "temporary failure" in str(err.value)


def test_partial_write_leaves_a_torn_object(
    faulty: tuple[Store, FaultPlan], tmp_path: Path
) -> None:
    store, plan = faulty
    plan.add(torn("pipe_file", keep=3, times=1))
    with pytest.raises(StorageError):
        store.manifests.write("t1", "n1", b"0123456789")
    assert store.manifests.read("t1", "n1") == b"012"  # what a non-atomic backend can leave


def test_a_chunk_read_that_fails_is_not_retried_here_and_recovers(
    faulty: tuple[Store, FaultPlan],
) -> None:
    store, plan = faulty
    import blake3

    data = bytes(range(256)) * 10
    digest = blake3.blake3(data).hexdigest()
    batch = store.chunks.batch()
    batch.add(digest, codec.encode(data, 3))
    batch.commit()
    plan.add(fail("cat_file", path=r"/blobs/", times=1))
    with pytest.raises(StorageError, match="injected reset of cat_file") as err:
        store.chunks.read(digest)
    assert err.value.transient
    assert store.chunks.read(digest, len(data)) == data
    assert plan.count("cat_file", OBJECTS) == 2


def test_a_read_can_fail_in_the_middle_of_a_stream(tmp_path: Path) -> None:
    plan = FaultPlan([fail("read", after=1, times=1)])
    fs = FaultyFileSystem(target_protocol="file", plan=plan)
    path = tmp_path / "blob"
    path.write_bytes(bytes(range(256)) * 10)
    with fs.open(str(path)) as fh:
        assert len(fh.read(1000)) == 1000
        with pytest.raises(ConnectionResetError, match="injected reset of read"):
            fh.read(1000)


# -- faults under create / verify / restore ----------------------------------------------------


@dataclass
class Faulty:
    """A setup whose store is wrapped in ``faulty::``, and its plan."""

    setup: Setup
    plan: FaultPlan

    def manager(self) -> FakeManager:
        base = self.setup.settings()
        options: dict[str, object] = {"plan": self.plan}
        if self.setup.storage_options:
            options["s3"] = dict(self.setup.storage_options)
        else:  # a generic fsspec store: cryostash writes objects without making folders
            options["file"] = {"auto_mkdir": True}
        url = self.setup.store_url
        url = f"faulty::file://{url}" if "://" not in url else f"faulty::{url}"
        return FakeManager(replace(base, store_url=url, storage_options=options), jobs=2)

    def objects(self) -> list[str]:
        return [f for f in self.setup.raw.files() if f.startswith(("blobs/", "checkpoints/"))]


@pytest.fixture
def fx(setup: Setup) -> Faulty:
    return Faulty(setup, FaultPlan())


def _round_trip(fx: Faulty, tmp_path: Path) -> int:
    """Create, verify (reading every byte), restore; return the injected failures."""
    files = make_image(tmp_path / "img")
    with fx.manager() as mgr:
        info = mgr.create("app", "cp", locator=str(tmp_path / "img"))
        assert info.status.value == "committed"
        report = verify_store(mgr.repository, read_data=True)
        assert report.ok, report.problems
        mgr.restore("app", "cp", engine_args=[str(tmp_path / "out")])
    assert read_tree(tmp_path / "out") == files
    return sum(f.fired for f in fx.plan.faults)


def test_resets_on_every_first_call_of_each_object_are_survived(
    fx: Faulty, tmp_path: Path
) -> None:
    fx.plan.add(fail(DATA_OPS, path=OBJECTS, per_path=True, times=1))
    injected = _round_trip(fx, tmp_path)
    assert injected >= 5  # every chunk upload, the manifest, every chunk read...


def test_timeouts_are_survived(fx: Faulty, tmp_path: Path) -> None:
    ops = BLOB_WRITES | BLOB_READS
    fx.plan.add(timeout(ops, 0.02, path=OBJECTS, per_path=True, times=1))
    assert _round_trip(fx, tmp_path) >= 5


def test_torn_uploads_are_replaced_not_trusted(fx: Faulty, tmp_path: Path) -> None:
    fx.plan.add(torn(BLOB_WRITES, keep=7, path=r"/blobs/", per_path=True, times=1))
    assert _round_trip(fx, tmp_path) >= 3  # every chunk torn once, then written whole


def _assert_nothing_committed(fx: Faulty, tmp_path: Path) -> None:
    with fx.manager() as mgr:
        assert mgr.list() == []
        assert mgr.catalog.pending() == []
        assert mgr.events() == []
    assert fx.objects() == [], "a failed create left objects in the store"
    scratch = fx.setup.scratch
    assert not scratch.exists() or list(scratch.iterdir()) == []


@pytest.mark.parametrize(
    "fault",
    [
        fail(BLOB_WRITES, path=r"/blobs/", transient=False),
        fail("pipe_file", path=r"/manifest.json$", transient=False),
        fail(BLOB_WRITES, path=r"/blobs/", after=1),  # transient, but it never stops
        torn("pipe_file", keep=5, path=r"/manifest.json$", transient=False),
    ],
    ids=["blob-denied", "manifest-denied", "blob-resets-forever", "manifest-torn"],
)
def test_permanent_faults_fail_cleanly_with_nothing_committed(
    fx: Faulty, tmp_path: Path, fault: Fault
) -> None:
    make_image(tmp_path / "img")
    fx.plan.add(fault)
    started = time.monotonic()
    with fx.manager() as mgr, pytest.raises(StorageError):
        mgr.create("app", "cp", locator=str(tmp_path / "img"))
    assert time.monotonic() - started < 60  # failed, did not hang
    fx.plan.clear()
    _assert_nothing_committed(fx, tmp_path)
    with fx.manager() as mgr:  # the name is free again and the next try works
        mgr.create("app", "cp", locator=str(tmp_path / "img"))
        assert verify_store(mgr.repository, read_data=True).ok


def test_a_failed_read_during_restore_starts_nothing_and_cleans_scratch(
    fx: Faulty, tmp_path: Path
) -> None:
    make_image(tmp_path / "img")
    with fx.manager() as mgr:
        mgr.create("app", "cp", locator=str(tmp_path / "img"))
    fx.plan.add(fail(BLOB_READS, path=r"/blobs/", transient=False))
    with fx.manager() as mgr:
        with pytest.raises(StorageError, match="permission denied"):
            mgr.restore("app", "cp", engine_args=[str(tmp_path / "out")])
        assert [e.action for e in mgr.events()] == ["checkpoint"]
    assert not (tmp_path / "out").exists()
    assert list(fx.setup.scratch.iterdir()) == []


def test_gc_running_just_before_the_manifest_write_changes_nothing(
    fx: Faulty, tmp_path: Path
) -> None:
    """A gc (grace 0) between the uploads and the manifest write of a create on another
    host must not delete the blobs of that pending checkpoint."""
    make_image(tmp_path / "img")
    ran: list[int] = []

    def gc_now(op: str, path: str) -> None:
        with fx.manager() as other:  # another host: same store, same catalog
            report = collect_garbage(other.repository, grace_s=0)
        ran.append(report.blobs_deleted)

    fx.plan.add(hook("pipe_file", gc_now, path=r"/manifest.json$", times=1))
    with fx.manager() as mgr:
        mgr.create("app", "cp", locator=str(tmp_path / "img"))
        assert ran == [0]
        assert verify_store(mgr.repository, read_data=True).ok
        with pytest.raises(CheckpointExists):
            mgr.create("app", "cp", locator=str(tmp_path / "img"))


def test_a_create_that_stopped_the_process_and_then_failed_restarts_it(
    setup: Setup, tmp_path: Path, criu_path: str, procs: ProcessTracker
) -> None:
    """Real CRIU: a dump without --leave-running stops the process; when storing the image
    then fails for good, the process is restarted from the local image (same PID, same
    memory) instead of being lost, and the error says so."""
    proc = procs.counter(tmp_path)
    assert proc.counter_path is not None
    fx = Faulty(setup, FaultPlan([fail(BLOB_WRITES, path=r"/blobs/", transient=False)]))
    base = fx.manager().repository.settings
    settings = replace(base, criu_path=criu_path)
    with CheckpointManager(settings, jobs=2) as mgr, pytest.raises(StorageError) as caught:
        mgr.create("app", "cp", locator=str(proc.pid))
    assert f"the process was restarted from the local image (PID {proc.pid})" in str(
        caught.value
    )
    before = read_counter(proc.counter_path)
    wait_until(lambda: read_counter(proc.counter_path) >= before + 3, 10, "counting again")
    fx.plan.clear()
    _assert_nothing_committed(fx, tmp_path)
