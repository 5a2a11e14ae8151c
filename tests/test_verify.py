"""verify: every kind of damage is reported (target, name, file, blob), restore refuses it,
and the ``verify`` verb prints it and exits 7. Fake engine (exact bytes); local+SQLite
and S3+PostgreSQL. ``test_corruption.py`` does the same end to end with real CRIU.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pytest

from cryostash import CheckpointNotFound, IntegrityError, verify_store
from cryostash.cli.app import run
from tests.support.fake_engine import FakeManager, make_image
from tests.support.setups import Setup, setup_fixture  # noqa: F401
from tests.support.stores import RawStore

Damage = Callable[[RawStore, dict[str, str]], None]


def _flip(raw: RawStore, d: dict[str, str]) -> None:
    raw.flip_byte(raw.blob(d["pages.img"]), offset=12345)


def _truncate(raw: RawStore, d: dict[str, str]) -> None:
    raw.put(raw.blob(d["pages.img"]), raw.get(raw.blob(d["pages.img"]))[:-100])


def _delete(raw: RawStore, d: dict[str, str]) -> None:
    raw.remove(raw.blob(d["pages.img"]))


def _zero(raw: RawStore, d: dict[str, str]) -> None:
    raw.put(raw.blob(d["pages.img"]), b"")


def _garbage_manifest(raw: RawStore, d: dict[str, str]) -> None:
    raw.put(raw.manifest("app", "cp"), b"\x00\xffnot json at all")


def _truncated_manifest(raw: RawStore, d: dict[str, str]) -> None:
    raw.put(raw.manifest("app", "cp"), raw.get(raw.manifest("app", "cp"))[:200])


def _deleted_manifest(raw: RawStore, d: dict[str, str]) -> None:
    raw.remove(raw.manifest("app", "cp"))


#: damage, problem kind, whether a check without --read-data finds it, file named
CASES: list[tuple[str, Damage, str, bool, str | None]] = [
    ("flipped-bit", _flip, "blob-corrupt", False, "pages.img"),
    ("truncated-blob", _truncate, "blob-corrupt", False, "pages.img"),
    ("deleted-blob", _delete, "blob-missing", True, "pages.img"),
    ("zero-byte-blob", _zero, "blob-size", True, "pages.img"),
    ("garbage-manifest", _garbage_manifest, "manifest-corrupt", True, None),
    ("truncated-manifest", _truncated_manifest, "manifest-corrupt", True, None),
    ("deleted-manifest", _deleted_manifest, "manifest-missing", True, None),
]


def _made(setup: Setup, tmp_path: Path) -> dict[str, str]:
    """Three checkpoints (app/cp and app/fine share every blob); the first blob (chunk) of
    each file of app/cp, by file."""
    make_image(tmp_path / "img")
    with setup.manager(FakeManager) as mgr:
        mgr.create("app", "cp", locator=str(tmp_path / "img"))
        mgr.create("app", "fine", locator=str(tmp_path / "img"))
        make_image(tmp_path / "other", seed=9, shared=b"other")
        mgr.create("db", "fine", locator=str(tmp_path / "other"))
        manifest = mgr.inspect("app", "cp").manifest
    return {f.path: f.blobs[0] for f in manifest.files if f.blobs}


@pytest.mark.parametrize(
    ("case", "damage", "kind", "cheap", "file"), CASES, ids=[c[0] for c in CASES]
)
def test_each_damage_is_reported_and_refused(
    setup: Setup,
    tmp_path: Path,
    case: str,
    damage: Damage,
    kind: str,
    cheap: bool,
    file: str | None,
) -> None:
    digests = _made(setup, tmp_path)
    damage(setup.raw, digests)
    with setup.manager(FakeManager) as mgr:
        report = verify_store(mgr.repository, read_data=True)
        assert not report.ok and report.checkpoints == 3
        mine = [p for p in report.problems if (p.target, p.name) == ("app", "cp")]
        assert kind in {p.kind for p in mine}, report.problems
        blob = digests[file] if file else None
        for problem in mine:
            assert problem.file == file and problem.blob == blob
            if blob:
                assert blob in problem.message and file in (problem.message or "")
        others = {(p.target, p.name) for p in report.problems}
        # a damaged blob is shared with app/fine; db/fine is untouched
        assert ("db", "fine") not in others
        if file is None:
            assert others == {("app", "cp")}
        cheap_report = verify_store(mgr.repository)  # sizes and presence only
        assert (not cheap_report.ok) == cheap
        assert verify_store(mgr.repository, "db", read_data=True).ok

        with pytest.raises((IntegrityError, CheckpointNotFound)) as err:
            mgr.restore("app", "cp", engine_args=[str(tmp_path / "out")])
        assert not (tmp_path / "out").exists(), "the engine saw damaged data"
        message = str(err.value)
        if blob is not None:
            assert blob in message and file is not None and file in message
        else:
            assert "app" in message and "cp" in message
        assert [e.action for e in mgr.events()].count("restore") == 0
    assert list(setup.scratch.iterdir()) == []


def test_verify_selects_target_and_checkpoint(setup: Setup, tmp_path: Path) -> None:
    _made(setup, tmp_path)
    with setup.manager(FakeManager) as mgr:
        assert verify_store(mgr.repository).checkpoints == 3
        assert verify_store(mgr.repository, "app").checkpoints == 2
        one = verify_store(mgr.repository, "db", "fine", read_data=True)
        assert one.checkpoints == 1 and one.ok and one.bytes_read > 0
        with pytest.raises(CheckpointNotFound, match="checkpoint nope does not exist"):
            verify_store(mgr.repository, "app", "nope")


def _cli(setup: Setup, monkeypatch: pytest.MonkeyPatch, *args: str) -> int:
    for key, value in setup.cli_env().items():
        monkeypatch.setenv(key, value)
    return run(list(args))


def test_verify_verb_prints_problems_and_exits_7(
    setup: Setup,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    digests = _made(setup, tmp_path)
    with setup.manager(FakeManager) as mgr:
        sound = verify_store(mgr.repository, read_data=True)
    assert _cli(setup, monkeypatch, "verify", "--read-data") == 0
    assert capsys.readouterr().out.splitlines()[-1] == (
        f"3 checkpoints, {sound.blobs} blobs checked, {sound.bytes_read} bytes read: "
        "no problems"
    )
    _flip(setup.raw, digests)
    assert _cli(setup, monkeypatch, "verify") == 0  # a flipped bit needs --read-data
    capsys.readouterr()
    assert _cli(setup, monkeypatch, "verify", "--read-data") == 7
    lines = capsys.readouterr().out.splitlines()
    blob = digests["pages.img"]
    assert lines[0].startswith(f"app/cp: blob {blob} of file pages.img is corrupt: ")
    assert lines[1].startswith(f"app/fine: blob {blob} of file pages.img is corrupt: ")
    assert lines[-1].endswith(": 2 problems")
    assert _cli(setup, monkeypatch, "verify", "app", "cp", "--read-data", "--json") == 7
    data = json.loads(capsys.readouterr().out)
    assert data["ok"] is False and data["checkpoints"] == 1
    assert data["problems"] == [
        {
            "target": "app",
            "name": "cp",
            "kind": "blob-corrupt",
            "file": "pages.img",
            "blob": blob,
            "message": data["problems"][0]["message"],
        }
    ]
    assert _cli(setup, monkeypatch, "verify", "app", "nope") == 3


def test_untracked_manifests_are_noted_not_failed(
    setup: Setup,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    _made(setup, tmp_path)
    with setup.manager(FakeManager) as mgr:
        mgr.catalog.remove(mgr.get("db", "fine").id)
        report = verify_store(mgr.repository)
        assert report.ok and report.untracked == (("db", "fine"),)
        assert verify_store(mgr.repository, "app").untracked == ()
    assert _cli(setup, monkeypatch, "verify") == 0
    assert "note: db/fine is in the store but not in the catalog" in capsys.readouterr().out
