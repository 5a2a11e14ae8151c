"""prune: retention policies applied to real stores and catalogs (local+SQLite, S3+PostgreSQL).

The engine is the fake one (a checkpoint is a copy of a folder: exact bytes, no process;
prune never runs an engine). Commit times for ``--keep-within`` are crafted in the catalog
rows, never waited for. Checked: kept and removed sets of each rule and of their union;
chunks only removed checkpoints used are gone from the store while a chunk shared with a
kept (or pending) checkpoint stays and the kept ones still verify and restore; ``--dry-run``
changes nothing; ``create --keep-last 2`` keeps the 2 newest and stores the target's
default, which a later ``prune TARGET`` in another process uses; bad flags exit 2.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from cryostash import CheckpointManager, Repository, UsageError, verify_store
from cryostash.catalog.policies import RetentionCatalog
from cryostash.cli.app import run
from cryostash.manager.maintenance import prune_checkpoints
from cryostash.retention import KeepLabel, KeepLast, KeepWithin, Policy
from tests.support import cli
from tests.support.fake_engine import FakeEngine, FakeManager, make_image, read_tree
from tests.support.setups import Setup, setup_fixture  # noqa: F401

SHARED = b"the same bytes in every checkpoint of every target"
T0 = datetime(2026, 3, 1, tzinfo=UTC)


def make(mgr: CheckpointManager, tmp: Path, target: str, name: str, seed: int,
         labels: Mapping[str, str] | None = None) -> None:  # fmt: skip
    """Checkpoint an image of its own (random files from ``seed``) plus the shared file."""
    folder = tmp / "images" / f"{target}-{name}"
    make_image(folder, seed=seed, shared=SHARED)
    mgr.create(target, name, locator=str(folder), labels=dict(labels or {}))


def blobs_of(mgr: CheckpointManager, target: str, name: str) -> dict[str, int]:
    """Digest -> plain size of every chunk of a checkpoint."""
    return mgr.inspect(target, name).manifest.chunk_sizes


def listed(mgr: CheckpointManager, target: str | None = None) -> list[str]:
    return [f"{i.target}/{i.name}" for i in mgr.list(target)]


def set_committed(setup: Setup, times: Mapping[tuple[str, str], datetime]) -> None:
    """Give checkpoints crafted ``created_at`` times (what orders them; behind
    cryostash's back)."""
    from sqlalchemy import update
    from sqlalchemy.orm import Session

    from cryostash.catalog.database import create_catalog_engine
    from cryostash.catalog.models import CheckpointRow

    engine = create_catalog_engine(setup.catalog_url)
    try:
        with Session(engine) as session, session.begin():
            for (target, name), when in times.items():
                session.execute(
                    update(CheckpointRow)
                    .where(CheckpointRow.target == target, CheckpointRow.name == name)
                    .values(created_at=when)
                )
    finally:
        engine.dispose()


def names_of(items: Iterable[object]) -> list[str]:
    return [getattr(getattr(i, "checkpoint", i), "name") for i in items]  # noqa: B009


def store_objects(setup: Setup) -> list[str]:
    return [f for f in setup.raw.files() if f.startswith(("blobs/", "checkpoints/"))]


# -- each rule, through the manager ---------------------------------------------------------


def test_keep_last_frees_only_the_chunks_no_kept_checkpoint_needs(
    setup: Setup, tmp_path: Path
) -> None:
    with setup.manager(FakeManager) as mgr:
        for i in range(1, 5):
            make(mgr, tmp_path, "web", f"cp{i}", seed=i)
        make(mgr, tmp_path, "db", "only", seed=99)
        chunks = {n: blobs_of(mgr, "web", n) for n in ("cp1", "cp2", "cp3", "cp4")}
        db_chunks = blobs_of(mgr, "db", "only")
        shared = set.intersection(*(set(c) for c in chunks.values()))
        assert len(shared) == 1  # the shared file's chunk; everything else is per image

        report = prune_checkpoints(mgr.repository, "web", Policy((KeepLast(2),)))

        (plan,) = report.targets
        assert plan.target == "web" and plan.source == "given"
        assert names_of(plan.kept) == ["cp4", "cp3"]
        assert [k.reasons for k in plan.kept] == [("last 2",), ("last 2",)]
        assert names_of(plan.removed) == ["cp2", "cp1"]
        assert listed(mgr) == ["db/only", "web/cp3", "web/cp4"]  # db is another target

        needed = set(chunks["cp3"]) | set(chunks["cp4"]) | set(db_chunks)
        gone = (set(chunks["cp1"]) | set(chunks["cp2"])) - needed
        raw = setup.raw
        assert gone and not any(raw.exists(raw.blob(d)) for d in gone)
        assert all(raw.exists(raw.blob(d)) for d in needed)
        assert all(raw.exists(raw.blob(d)) for d in shared)
        assert not raw.exists(raw.manifest("web", "cp1"))
        assert not raw.exists(raw.manifest("web", "cp2"))
        assert report.blobs_deleted == len(gone)
        assert report.bytes_freed == sum(
            {**chunks["cp1"], **chunks["cp2"]}[d] for d in gone
        )
        assert (report.kept, report.removed, report.dry_run) == (2, 2, False)

        # the kept checkpoints still read back byte for byte, shared chunk included
        assert verify_store(mgr.repository, read_data=True).ok
        mgr.restore("web", "cp3", engine_args=[str(tmp_path / "out")])
        assert read_tree(tmp_path / "out") == read_tree(tmp_path / "images" / "web-cp3")

        deletes = [e for e in mgr.events("web") if e.action == "delete"]
        assert sorted(e.name for e in deletes) == ["cp1", "cp2"]
        assert all(e.detail["by"] == "prune" for e in deletes)
        assert store_objects(setup) == sorted(
            [raw.manifest(t, n) for t, n in (("db", "only"), ("web", "cp3"), ("web", "cp4"))]
            + [raw.blob(d) for d in needed]
        )


def test_keep_within_counts_back_from_the_newest_checkpoint(
    setup: Setup, tmp_path: Path
) -> None:
    with setup.manager(FakeManager) as mgr:
        for i, name in enumerate(["d0", "d1", "d5", "d6"]):
            make(mgr, tmp_path, "web", name, seed=i)
        make(mgr, tmp_path, "old", "only", seed=50)
        day = timedelta(days=1)
        set_committed(setup, {
            ("web", "d0"): T0, ("web", "d1"): T0 + day, ("web", "d5"): T0 + 5 * day,
            ("web", "d6"): T0 + 6 * day, ("old", "only"): T0 - 300 * day,
        })  # fmt: skip
        # long ago: "now" plays no part, the window ends at each target's newest one
        report = prune_checkpoints(mgr.repository, policy=Policy((KeepWithin("2d"),)))
        assert [(p.target, names_of(p.kept), names_of(p.removed)) for p in report.targets] == [
            ("old", ["only"], []),
            ("web", ["d6", "d5"], ["d1", "d0"]),
        ]
        assert report.targets[1].kept[0].reasons == ("within 2d",)
        assert listed(mgr) == ["old/only", "web/d5", "web/d6"]
        assert verify_store(mgr.repository, read_data=True).ok


def test_keep_label_and_the_union_of_rules(setup: Setup, tmp_path: Path) -> None:
    with setup.manager(FakeManager) as mgr:
        labels = [{"env": "prod"}, {}, {"env": "staging"}, {}, {"env": "prod"}, {}]
        for i, lab in enumerate(labels):
            make(mgr, tmp_path, "web", f"cp{i}", seed=i, labels=lab)
        hour = timedelta(hours=1)
        set_committed(setup, {("web", f"cp{i}"): T0 + i * 10 * hour for i in range(6)})

        only_label = prune_checkpoints(
            mgr.repository, "web", Policy((KeepLabel("env", "prod"),)), dry_run=True
        )
        assert names_of(only_label.targets[0].kept) == ["cp4", "cp0"]

        policy = Policy.of(keep_last=1, keep_within="20h", keep_labels=["env=prod"])
        assert policy is not None
        report = prune_checkpoints(mgr.repository, "web", policy)
        assert {k.checkpoint.name: k.reasons for k in report.targets[0].kept} == {
            "cp5": ("last 1", "within 20h"),
            "cp4": ("within 20h", "label env=prod"),
            "cp3": ("within 20h",),
            "cp0": ("label env=prod",),
        }
        assert names_of(report.targets[0].removed) == ["cp2", "cp1"]
        assert listed(mgr) == ["web/cp0", "web/cp3", "web/cp4", "web/cp5"]


def test_a_chunk_a_pending_checkpoint_uses_survives(setup: Setup, tmp_path: Path) -> None:
    with setup.manager(FakeManager) as mgr:
        make(mgr, tmp_path, "web", "old", seed=1)
        make(mgr, tmp_path, "web", "new", seed=2)
        old = blobs_of(mgr, "web", "old")
        pending = mgr.catalog.reserve(
            store_url=mgr.store().url, target="web", name="being-made", host="h",
            engine="fake", labels={}, lease_seconds=600,
        )  # fmt: skip
        mgr.catalog.add_blob_refs(pending.id, old)  # a create on another host uses them

        report = prune_checkpoints(mgr.repository, "web", Policy((KeepLast(1),)))
        assert names_of(report.targets[0].removed) == ["old"]
        assert report.blobs_deleted == 0
        assert all(setup.raw.exists(setup.raw.blob(d)) for d in old)
        assert [i.name for i in mgr.catalog.pending()] == ["being-made"]  # untouched
        assert listed(mgr) == ["web/new"]


# -- dry run and defaults ---------------------------------------------------------------------


def test_dry_run_changes_nothing(setup: Setup, tmp_path: Path) -> None:
    with setup.manager(FakeManager) as mgr:
        for i in range(3):
            make(mgr, tmp_path, "web", f"cp{i}", seed=i)
        gone = set(blobs_of(mgr, "web", "cp0")) - set(blobs_of(mgr, "web", "cp1")) - set(
            blobs_of(mgr, "web", "cp2")
        )
        objects, rows = store_objects(setup), cli.catalog_rows(setup.catalog_url)

        report = prune_checkpoints(
            mgr.repository, "web", Policy((KeepLast(2),)), dry_run=True, save_default=True
        )

        assert report.dry_run and names_of(report.targets[0].removed) == ["cp0"]
        assert report.blobs_deleted == len(gone) > 0  # what it would free
        assert store_objects(setup) == objects
        assert cli.catalog_rows(setup.catalog_url) == rows  # no event, no default either
        assert RetentionCatalog(mgr.catalog).default(mgr.store().url, "web") is None


def test_prune_without_rules_uses_each_targets_default(setup: Setup, tmp_path: Path) -> None:
    with setup.manager(FakeManager) as mgr:
        for i in range(3):
            make(mgr, tmp_path, "web", f"cp{i}", seed=i)
            make(mgr, tmp_path, "db", f"cp{i}", seed=10 + i)
        with pytest.raises(UsageError) as err:
            prune_checkpoints(mgr.repository, "web")
        assert "no retention policy for container web: give --keep-last N" in str(err.value)

        prune_checkpoints(mgr.repository, "web", Policy((KeepLast(2),)), save_default=True)
        assert listed(mgr, "web") == ["web/cp1", "web/cp2"]
        stored = RetentionCatalog(mgr.catalog).default(mgr.store().url, "web")
        assert stored is not None and stored.policy == Policy((KeepLast(2),))
        assert stored.host == "host-a"

        make(mgr, tmp_path, "web", "cp3", seed=3)
        report = prune_checkpoints(mgr.repository)  # every target: web by its default; db: none
        assert [(p.target, p.source) for p in report.targets] == [("db", None), ("web", "default")]
        assert names_of(report.targets[1].removed) == ["cp1"]
        assert listed(mgr) == ["db/cp0", "db/cp1", "db/cp2", "web/cp2", "web/cp3"]

        with pytest.raises(UsageError, match="needs --keep-last N or --keep-within"):
            prune_checkpoints(
                mgr.repository, "web", Policy((KeepLabel("a", "b"),)), save_default=True
            )


# -- the CLI ------------------------------------------------------------------------------------


def _cli(setup: Setup, monkeypatch: pytest.MonkeyPatch, *args: str) -> int:
    """``cryostash ARGS`` in this process, on ``setup``, every engine the fake one."""
    for key, value in setup.cli_env().items():
        monkeypatch.setenv(key, value)
    monkeypatch.setattr(Repository, "engine", lambda self, name: FakeEngine())
    return run(list(args))


def test_create_keep_last_2_five_times_keeps_the_2_newest_and_the_default_persists(
    setup: Setup,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    for i in range(1, 6):
        image = tmp_path / f"img{i}"
        make_image(image, seed=i, shared=SHARED)
        code = _cli(
            setup, monkeypatch, "create", "web", f"cp{i}", "--engine", "fake", "--pid",
            str(image), "--keep-last", "2",
        )  # fmt: skip
        out, err = capsys.readouterr()
        assert code == 0, err
        assert out == f"cp{i}\n"  # create's output is unchanged
        assert err.splitlines() == ([f"pruned web cp{i - 2}"] if i >= 3 else [])
    with setup.manager(FakeManager) as mgr:
        assert listed(mgr) == ["web/cp4", "web/cp5"]
        assert verify_store(mgr.repository, read_data=True).ok
        make(mgr, tmp_path, "web", "cp6", seed=6)  # no policy given: none applied
        assert listed(mgr) == ["web/cp4", "web/cp5", "web/cp6"]

    assert _cli(setup, monkeypatch, "prune", "web", "--dry-run") == 0
    dry = capsys.readouterr().out.splitlines()
    assert dry[:-1] == [
        "web: policy --keep-last 2 (stored default)",
        "keep web cp6 (last 2)",
        "keep web cp5 (last 2)",
        "would remove web cp4",
    ]
    assert dry[-1].startswith("2 kept, 1 would be removed, ")

    # another process: the stored default is what `prune web` uses
    done = cli.run(["prune", "web", "--json"], setup.cli_env())
    data = json.loads(done.stdout)
    assert data["dry_run"] is False and data["blobs_deleted"] > 0
    assert data["targets"] == [
        {
            "target": "web",
            "policy": {"keep_last": 2, "keep_within": None, "keep_labels": []},
            "policy_source": "default",
            "kept": [
                {"name": "cp6", "reasons": ["last 2"]},
                {"name": "cp5", "reasons": ["last 2"]},
            ],
            "removed": [{"name": "cp4"}],
        }
    ]
    with setup.manager(FakeManager) as mgr:
        assert listed(mgr) == ["web/cp5", "web/cp6"]


def test_prune_verb_without_target_reports_targets_without_policy(
    setup: Setup,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    with setup.manager(FakeManager) as mgr:
        for i in range(2):
            make(mgr, tmp_path, "web", f"cp{i}", seed=i)
        make(mgr, tmp_path, "db", "cp0", seed=20)
        prune_checkpoints(mgr.repository, "web", Policy((KeepLast(5),)), save_default=True)
    assert _cli(setup, monkeypatch, "prune") == 0
    assert capsys.readouterr().out.splitlines() == [
        "db: no policy, left alone",
        "web: policy --keep-last 5 (stored default)",
        "keep web cp1 (last 5)",
        "keep web cp0 (last 5)",
        "2 kept, 0 removed, 0 chunks freed (0 bytes)",
    ]
    assert _cli(setup, monkeypatch, "prune", "--keep-last", "1", "--json") == 0
    data = json.loads(capsys.readouterr().out)
    assert [(t["target"], t["policy_source"], t["removed"]) for t in data["targets"]] == [
        ("db", "given", []),
        ("web", "given", [{"name": "cp0"}]),
    ]
    assert data["removed"] == 1 and data["dry_run"] is False


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["prune", "web"], "no retention policy for container web: give --keep-last N, "
         "--keep-within DURATION or --keep-label KEY=VALUE"),
        (["prune", "web", "--keep-last", "0"], "--keep-last: invalid count '0'"),
        (["prune", "web", "--keep-last", "two"], "--keep-last: invalid count 'two'"),
        (["prune", "web", "--keep-last", "-1"], "--keep-last: invalid count '-1'"),
        (["prune", "web", "--keep-within", "7x"], "--keep-within: invalid duration '7x'"),
        (["prune", "web", "--keep-within", "0"], "--keep-within: invalid duration '0'"),
        (["prune", "web", "--keep-within=-1d"], "--keep-within: invalid duration '-1d'"),
        (["prune", "web", "--keep-label", "env"], "--keep-label: invalid label 'env'"),
        (["prune", "bad/name", "--keep-last", "1"], "Invalid container name (bad/name)"),
        (["create", "web", "new", "--engine", "fake", "--pid", "IMG", "--keep-label", "a=b"],
         "--keep-label needs --keep-last N or --keep-within DURATION"),
        (["create", "web", "new", "--engine", "fake", "--pid", "IMG", "--keep-last", "0"],
         "--keep-last: invalid count '0'"),
    ],
)  # fmt: skip
def test_bad_flags_exit_2_and_change_nothing(
    setup: Setup,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    args: list[str],
    message: str,
) -> None:
    with setup.manager(FakeManager) as mgr:
        make(mgr, tmp_path, "web", "cp0", seed=0)
    objects, rows = store_objects(setup), cli.catalog_rows(setup.catalog_url)
    make_image(tmp_path / "img", seed=1)
    args = [str(tmp_path / "img") if a == "IMG" else a for a in args]
    assert _cli(setup, monkeypatch, *args) == 2
    err = capsys.readouterr().err
    assert err.startswith("Error: ") and message in err, err
    assert store_objects(setup) == objects  # nothing dumped, nothing removed
    assert cli.catalog_rows(setup.catalog_url) == rows
