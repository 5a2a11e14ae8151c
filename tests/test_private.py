"""Process memory stays owner-only: with the usual umask 022, everything cryostash writes
under a local store, the chunk cache, scratch and an SQLite catalog it creates is 0700
(folders) or 0600 (files), after a real CRIU create, prefetch, restore and gc through the
command; ``doctor`` warns about a store or cache that others can read, with the fix.
"""

from __future__ import annotations

import json
import os
import stat
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support import cli
from tests.support.processes import ProcessTracker, read_counter, wait_pid_gone, wait_until
from tests.support.stores import MotoServer


@pytest.fixture
def umask_022() -> Iterator[None]:
    """Commands started by the test inherit umask 022 (the usual default)."""
    old = os.umask(0o022)
    try:
        yield
    finally:
        os.umask(old)


def exposed(*roots: Path) -> list[str]:
    """Every path under ``roots`` (themselves included) that grants group or others
    anything, with its mode."""
    found = []
    for root in roots:
        for path in [root, *root.rglob("*")]:
            mode = os.lstat(path).st_mode
            if stat.S_IMODE(mode) & 0o077 and not stat.S_ISLNK(mode):
                found.append(f"{path} {stat.S_IMODE(mode):o}")
    return found


@pytest.mark.parametrize("where", ["local", "s3"])
def test_everything_written_is_owner_only_whatever_the_umask(
    umask_022: None, procs: ProcessTracker, tmp_path: Path, criu_path: str,
    moto_server: MotoServer, where: str,
) -> None:  # fmt: skip
    data = tmp_path / "data"  # nothing exists yet: cryostash creates every folder
    store = str(data / "store") if where == "local" else f"s3://{moto_server.make_bucket()}/cs"
    env = cli.base_env(
        CRYOSTASH_STORE=store, CRYOSTASH_CATALOG=f"sqlite:///{data / 'db' / 'catalog.db'}",
        CRYOSTASH_SCRATCH=str(data / "scratch"), CRYOSTASH_CACHE=str(data / "cache"),
        CRYOSTASH_CRIU=criu_path, CRYOSTASH_HOST="host-a",
    )  # fmt: skip
    if where == "s3":
        env.update(moto_server.env())
    proc = procs.counter(tmp_path / "proc")
    counter = proc.counter_path
    assert counter is not None
    wait_until(lambda: read_counter(counter) >= 3, 10, "the counter to reach 3")
    cli.run(["create", "counter", "cp", "--pid", str(proc.pid)], env)
    wait_pid_gone(proc.pid)
    cli.run(["prefetch", "counter", "cp"], env)
    done = cli.run(["restore", "counter", "cp", "--json"], env)
    procs.track(int(json.loads(done.stdout)["pid"]))
    cli.run(["gc", "--grace", "0s"], env)
    written = [data / "db", data / "scratch"]
    written.append(data / "store" if where == "local" else data / "cache")
    assert all(p.exists() for p in written)
    if where == "s3":
        assert any(p.is_file() for p in (data / "cache").rglob("*"))
    else:
        assert any(p.is_file() for p in (data / "store" / "blobs").rglob("*"))
    assert exposed(*written) == []


def test_doctor_warns_about_a_store_or_cache_others_can_read(tmp_path: Path) -> None:
    store, cache = tmp_path / "store", tmp_path / "cache"
    for folder in (store / "blobs", cache / "ab"):
        folder.mkdir(parents=True)
        folder.chmod(0o755)
    store.chmod(0o755)
    cache.chmod(0o755)
    env = cli.base_env(
        CRYOSTASH_STORE=str(store), CRYOSTASH_CATALOG=f"sqlite:///{tmp_path / 'c.db'}",
        CRYOSTASH_SCRATCH=str(tmp_path / "scratch"), CRYOSTASH_CACHE=str(cache),
    )  # fmt: skip
    text = cli.run(["doctor"], env, check=False).stdout
    line = next(ln for ln in text.splitlines() if "permissions" in ln)
    assert line.startswith("[WARN] permissions:")
    assert f"readable by other users (they hold process memory): store {store}; " in text
    assert f"chunk cache {cache}; fix: chmod -R go-rwx {cache} {store}" in text
    subprocess.run(["chmod", "-R", "go-rwx", str(cache), str(store)], check=True)  # the fix
    text = cli.run(["doctor"], env, check=False).stdout
    assert "[ok  ] permissions: private=True" in text
