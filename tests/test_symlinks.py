"""A local store where ``checkpoints/<target>`` or a blob folder has been replaced by a
symbolic link to a folder outside the store: ``rm``, ``prune`` and ``gc`` (through the real
command, as root in CI) delete nothing outside the store root and say which link stops
them; ``verify`` reports the link. The root itself may be a link (a store moved to
another disk): that is followed as the user configured it.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

from cryostash.store import Manifest
from tests.support import cli
from tests.support.fake_engine import FakeManager, make_image
from tests.support.setups import Setup, make_setup


def tree(folder: Path) -> dict[str, bytes]:
    """Every file under ``folder`` and its bytes (links not followed)."""
    return {
        str(p.relative_to(folder)): p.read_bytes()
        for p in sorted(folder.rglob("*"))
        if p.is_file() and not p.is_symlink()
    }


def _populate(tmp_path: Path) -> Setup:
    setup = make_setup("local-sqlite", tmp_path)
    with setup.manager(FakeManager) as mgr:
        for i, name in enumerate(["one", "two", "three"]):
            make_image(tmp_path / f"img-{name}", seed=i, shared=name.encode())
            mgr.create("app", name, locator=str(tmp_path / f"img-{name}"))
    return setup


def _link_away(store: Path, rel: str, outside: Path) -> None:
    """Move ``store/rel`` to ``outside`` and put a symbolic link to it in its place (what
    a careless admin or an attacker with write access to the store might do)."""
    shutil.move(store / rel, outside)
    os.symlink(outside, store / rel)


@pytest.mark.parametrize("linked", ["checkpoints/app", "blob-folder"])
def test_rm_prune_and_gc_delete_nothing_outside_the_store(tmp_path: Path, linked: str) -> None:
    setup = _populate(tmp_path)
    store = Path(setup.store_url)
    if linked == "blob-folder":
        manifest = Manifest.from_bytes((store / "checkpoints/app/one/manifest.json").read_bytes())
        digest = sorted(manifest.blob_digests)[0]
        linked = f"blobs/{digest[:2]}"
    outside = tmp_path / "outside" / "precious"
    outside.parent.mkdir()
    _link_away(store, linked, outside)
    (outside / "not-cryostash.txt").write_bytes(b"someone else's file\n")
    before = tree(outside)
    env = setup.cli_env()

    for args in (["rm", "app", "one"], ["prune", "app", "--keep-last", "1"],
                 ["gc", "--grace", "0s"]):  # fmt: skip
        done = cli.run(args, env, check=False)
        assert tree(outside) == before, args
        if args[0] == "rm" or linked.startswith("checkpoints") or args[0] == "gc":
            assert done.returncode != 0, (args, done.stdout, done.stderr)
            assert f"{store / linked} is a symbolic link (to {outside})" in done.stderr, args
    assert os.path.islink(store / linked) and tree(outside) == before
    verified = cli.run(["verify"], env, check=False)
    assert verified.returncode != 0
    assert f"{store / linked} is a symbolic link (to {outside})" in verified.stderr
    assert "cryostash never follows links in a store" in verified.stderr


def test_a_store_root_that_is_a_link_works_as_configured(tmp_path: Path) -> None:
    real = tmp_path / "disk2" / "store"
    setup = make_setup("local-sqlite", tmp_path)
    real.parent.mkdir()
    os.symlink(real.parent, tmp_path / "via")
    setup.store_url = str(tmp_path / "via" / "store")
    make_image(tmp_path / "img")
    with setup.manager(FakeManager) as mgr:
        mgr.create("app", "cp", locator=str(tmp_path / "img"))
        mgr.remove("app", "cp")
    env = setup.cli_env()
    assert cli.run(["gc", "--grace", "0s"], env).returncode == 0
    assert cli.run(["verify"], env).returncode == 0
    assert not [p for p in real.rglob("*") if p.is_file()]
