"""catalog rebuild: a lost catalog is recreated from the store's manifests alone; every
committed checkpoint comes back, verifies and restores; what cannot be restored is
skipped with its reason. Fake engine (exact bytes) on local+SQLite and S3+PostgreSQL;
``test_crash.py`` rebuilds real CRIU checkpoints and restores a process from them.
"""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import pytest

from cryostash import collect_garbage, rebuild_catalog, verify_store
from cryostash.cli.app import run
from cryostash.manager.maintenance import prune_checkpoints
from cryostash.retention import Policy
from cryostash.store import Manifest
from tests.support.fake_engine import FakeManager, make_image, read_tree
from tests.support.setups import Setup, setup_fixture  # noqa: F401

LISTED = ("target", "name", "status", "created_at", "host", "engine", "size_bytes", "labels")


def _populate(setup: Setup, tmp_path: Path) -> dict[str, dict[str, bytes]]:
    images = {
        "a": make_image(tmp_path / "a", seed=1),
        "b": make_image(tmp_path / "b", seed=2),
        "c": make_image(tmp_path / "c", seed=3, shared=b"c only"),
    }
    with setup.manager(FakeManager) as mgr:
        mgr.create("web", "one", locator=str(tmp_path / "a"), labels={"tier": "web"})
        mgr.create("web", "two", locator=str(tmp_path / "b"))
        mgr.create("db", "one", locator=str(tmp_path / "c"), labels={"k": "v"})
    return images


def test_a_lost_catalog_comes_back_from_the_manifests(setup: Setup, tmp_path: Path) -> None:
    images = _populate(setup, tmp_path)
    with setup.manager(FakeManager) as mgr:
        before = [{k: i.summary()[k] for k in LISTED} for i in mgr.list()]
        stats = {(i.target, i.name): dict(i.stats) for i in mgr.list()}
    setup.lose_catalog()
    with setup.manager(FakeManager) as mgr:
        assert mgr.list() == []
        report = rebuild_catalog(mgr.repository)
        assert report.ok and report.imported == ("db/one", "web/one", "web/two")
        assert [{k: i.summary()[k] for k in LISTED} for i in mgr.list()] == before
        assert {(i.target, i.name): dict(i.stats) for i in mgr.list()} == stats
        assert verify_store(mgr.repository, read_data=True).ok
        for (target, name), image in (("web", "one"), "a"), (("db", "one"), "c"):
            out = tmp_path / f"out-{target}-{name}"
            mgr.restore(target, name, engine_args=[str(out)])
            assert read_tree(out) == images[image]
        again = rebuild_catalog(mgr.repository)
        assert again.ok and again.imported == () and len(again.present) == 3
        # every blob is referenced again
        assert not collect_garbage(mgr.repository, grace_s=0).changed
        assert [e.action for e in mgr.events()][:3] == ["rebuild"] * 3


def test_what_cannot_be_restored_is_skipped_with_its_reason(
    setup: Setup,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    _populate(setup, tmp_path)
    raw = setup.raw
    with setup.manager(FakeManager) as mgr:
        lost_blob = mgr.inspect("web", "two").manifest.files[0].blobs[0]
    raw.put(raw.manifest("db", "one"), b"{garbage")
    raw.remove(raw.blob(lost_blob))
    setup.lose_catalog()
    for key, value in setup.cli_env().items():
        monkeypatch.setenv(key, value)
    assert run(["catalog", "rebuild"]) == 7
    out = capsys.readouterr().out.splitlines()
    assert out[0] == "imported web/one"
    assert out[1].startswith("skipped db/one: manifest of db/one is corrupt: not valid JSON")
    assert out[2] == (
        f"skipped web/two: cannot be restored: blob {lost_blob} of file core.img is missing "
        "from the store"
    )
    assert out[3] == "1 imported, 0 already in the catalog, 2 skipped"
    assert run(["catalog", "rebuild", "--json"]) == 7
    data = json.loads(capsys.readouterr().out)
    assert data["present"] == ["web/one"] and data["imported"] == []
    assert [s["checkpoint"] for s in data["skipped"]] == ["db/one", "web/two"]
    assert run(["ls"]) == 0
    assert capsys.readouterr().out.split()[-2:] == ["web", "one"]


def test_rows_the_catalog_has_are_left_alone(setup: Setup, tmp_path: Path) -> None:
    _populate(setup, tmp_path)
    with setup.manager(FakeManager) as mgr:
        info = mgr.get("web", "two")
        mgr.catalog.remove(info.id)
        pending = mgr.catalog.reserve(
            store_url=mgr.store().url, target="web", name="two", host="h", engine="fake",
            labels={}, lease_seconds=600,
        )
        report = rebuild_catalog(mgr.repository)
        assert report.present == ("db/one", "web/one") and report.imported == ()
        assert report.skipped == (
            ("web/two", "it is being created (pending); `cryostash gc` settles it"),
        )
        mgr.catalog.abort(pending.id)
        raw = setup.raw
        changed = replace(Manifest.from_bytes(raw.get(raw.manifest("web", "one"))), labels={})
        raw.put(raw.manifest("web", "one"), changed.to_bytes())  # valid, not the catalog's
        report = rebuild_catalog(mgr.repository)
        assert report.imported == ("web/two",)
        assert ("web/one", "the catalog records a different manifest for it") in report.skipped


def test_prune_after_a_rebuild_keeps_what_it_kept_before(setup: Setup, tmp_path: Path) -> None:
    # Created in the reverse order of their names: a rebuild imports them by name, so
    # any ordering by import (or commit) time would now see "a-newest" as the oldest.
    order = ["z-oldest", "m-middle", "b-newer", "a-newest"]
    with setup.manager(FakeManager) as mgr:
        for i, name in enumerate(order):
            make_image(tmp_path / name, seed=10 + i)
            mgr.create("web", name, locator=str(tmp_path / name))
        before = prune_checkpoints(mgr.repository, "web", Policy.of(keep_last=2), dry_run=True)
        latest_before = mgr.latest("web").name
    assert [k.checkpoint.name for k in before.targets[0].kept] == ["a-newest", "b-newer"]
    setup.lose_catalog()
    with setup.manager(FakeManager) as mgr:
        assert rebuild_catalog(mgr.repository).imported == tuple(f"web/{n}" for n in sorted(order))
        assert mgr.latest("web").name == latest_before == "a-newest"
        after = prune_checkpoints(mgr.repository, "web", Policy.of(keep_last=2))
        assert [k.checkpoint.name for k in after.targets[0].kept] == ["a-newest", "b-newer"]
        assert [i.name for i in after.targets[0].removed] == ["m-middle", "z-oldest"]
        assert [i.name for i in mgr.list("web")] == ["a-newest", "b-newer"]
