"""verify: every kind of damage is reported (target, name, file, blob), restore refuses it,
and the ``verify`` verb prints it and exits 7. Fake engine (exact bytes); local+SQLite
and S3+PostgreSQL. ``test_corruption.py`` does the same end to end with real CRIU.
"""

from __future__ import annotations

import json
import random
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

import pytest

from cryostash import CheckpointNotFound, IntegrityError, verify_store
from cryostash.cli.app import run
from cryostash.config.transfer import TransferSettings
from cryostash.operations.verify_subset import parse_subset
from tests.support.fake_engine import FakeManager, make_image, write_tree
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


def _many_chunks(setup: Setup, tmp_path: Path) -> set[str]:
    """Two checkpoints of random images cut into ~4 KiB chunks (some hundreds of blobs,
    one shared file); every blob the store holds."""
    settings = replace(setup.settings(), transfer=TransferSettings(chunk_size=4096))
    with FakeManager(settings) as mgr:
        for i in range(2):
            folder = tmp_path / f"img{i}"
            write_tree(folder, {"pages.img": random.Random(i).randbytes(600_000),
                                "sub/shared.img": b"shared by both" * 100})
            mgr.create("app", f"cp{i}", locator=str(folder))
        blobs: set[str] = set()
        for i in range(2):
            blobs |= mgr.inspect("app", f"cp{i}").manifest.blob_digests
    assert len(blobs) > 150
    return blobs


def test_read_data_subsets_cover_the_store_and_find_a_corrupt_chunk(
    setup: Setup, tmp_path: Path
) -> None:
    """30 runs of ``10%`` with different seeds (the days of a month) read every chunk (any
    10 consecutive seeds do: the windows lie end to end); ``1/7`` ... ``7/7`` read each
    exactly once; a flipped chunk is reported by exactly the runs that read it."""
    blobs = _many_chunks(setup, tmp_path)
    with setup.manager(FakeManager) as mgr:
        runs = [verify_store(mgr.repository, subset=parse_subset("10%"), seed=s)
                for s in range(20_000, 20_030)]
        assert all(r.ok and r.read_data for r in runs)
        assert set().union(*(r.read for r in runs)) == blobs
        assert set().union(*(r.read for r in runs[7:17])) == blobs  # any 10 consecutive
        for r in runs:  # each reads about a tenth (a uniform hash), and says which
            assert 0.03 * len(blobs) < len(r.read) < 0.2 * len(blobs), len(r.read)
            assert r.subset is not None and r.subset.startswith("10% (seed ")
            assert r.bytes_read > 0 and r.blobs == len(blobs)
        parts = [verify_store(mgr.repository, subset=parse_subset(f"{k}/7")).read
                 for k in range(1, 8)]
        assert sum(len(p) for p in parts) == len(blobs) and set().union(*parts) == blobs

        victim = sorted(blobs)[len(blobs) // 2]
        setup.raw.flip_byte(setup.raw.blob(victim), offset=20)
        for seed, before in zip(range(20_000, 20_030), runs, strict=True):
            again = verify_store(mgr.repository, subset=parse_subset("10%"), seed=seed)
            if victim in before.read:
                assert [p.blob for p in again.problems] == [victim]
                assert again.problems[0].kind == "blob-corrupt"
            else:
                assert again.ok, again.problems
        assert any(victim in r.read for r in runs)


@pytest.mark.parametrize(
    "bad", ["0%", "101%", "10", "%", "1/0", "0/3", "4/3", "a/b", "10%%", "-5%", "1e2%", "²/3"]
)
def test_bad_read_data_subset_is_refused(
    setup: Setup,
    bad: str,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert _cli(setup, monkeypatch, "verify", f"--read-data-subset={bad}") == 2
    err = capsys.readouterr().err
    assert f"invalid --read-data-subset {bad!r}: expected N% (0 < N <= 100) or K/M" in err


def test_verify_verb_reports_what_a_subset_read(
    setup: Setup,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    blobs = _many_chunks(setup, tmp_path)
    assert _cli(setup, monkeypatch, "verify", "--read-data-subset", "25%", "--seed", "3") == 0
    last = capsys.readouterr().out.splitlines()[-1]
    assert last.startswith(f"2 checkpoints, {len(blobs)} blobs checked, ")
    assert "read (subset 25% (seed 3: from 0.7500 of the ring)), " in last
    assert last.endswith("bytes read: no problems")
    assert _cli(setup, monkeypatch, "verify", "--read-data-subset", "2/3", "--json") == 0
    data = json.loads(capsys.readouterr().out)
    assert data["subset"] == "2/3" and 0 < data["blobs_read"] < len(blobs)
    assert _cli(setup, monkeypatch, "verify", "--read-data-subset", "2/3", "--seed", "1") == 2
    assert "--seed goes with --read-data-subset N%" in capsys.readouterr().err
