"""``cryostash prefetch``: host B pulls a checkpoint's chunks into its chunk cache ahead of
the restore, so that the restore downloads nothing. The real ``cryostash`` command on an
S3 store (the session's moto server) with a SQLite catalog both "hosts" share: host A has
no chunk cache, host B its own fresh one and its own scratch folder.

The end-to-end test checkpoints a real process with real CRIU; the others make their
checkpoints in-process with the fake engine (tests/support/fake_engine.py), since they
are about the store, the cache and the messages.
"""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

from cryostash import Settings
from cryostash.config.transfer import TransferSettings
from cryostash.store import Manifest
from tests.support import cli
from tests.support.fake_engine import FakeManager, make_image
from tests.support.processes import (
    ProcessTracker,
    pid_exists,
    read_counter,
    wait_pid_gone,
    wait_until,
)
from tests.support.stores import MotoServer, RawStore


class Hosts:
    """Host A and host B on one S3 bucket and one SQLite catalog."""

    def __init__(self, tmp_path: Path, moto: MotoServer, criu: str | None = None) -> None:
        import s3fs

        bucket = moto.make_bucket()
        self.store = f"s3://{bucket}/cs"
        self.catalog = f"sqlite:///{tmp_path / 'catalog.db'}"
        self.cache_b = tmp_path / "b" / "cache"
        self.moto = moto
        self.raw = RawStore(s3fs.S3FileSystem(**moto.options(), skip_instance_cache=True),
                            f"{bucket}/cs")
        common = {
            "CRYOSTASH_STORE": self.store,
            "CRYOSTASH_CATALOG": self.catalog,
            **({"CRYOSTASH_CRIU": criu} if criu else {}),
            **moto.env(),
        }
        self.env_a = cli.base_env(
            **common, CRYOSTASH_HOST="host-a", CRYOSTASH_CACHE="none",
            CRYOSTASH_SCRATCH=str(tmp_path / "a" / "scratch"),
        )
        self.env_b = cli.base_env(
            **common, CRYOSTASH_HOST="host-b", CRYOSTASH_CACHE=str(self.cache_b),
            CRYOSTASH_SCRATCH=str(tmp_path / "b" / "scratch"),
        )
        self.tmp_path = tmp_path

    def settings(self, host: str, cache: Path | None = None) -> Settings:
        return Settings(
            store_url=self.store,
            catalog_url=self.catalog,
            scratch_dir=self.tmp_path / host / "scratch",
            host=host,
            storage_options=self.moto.options(),
            transfer=TransferSettings(cache_dir=cache),
        )

    def a(self, *args: str, check: bool = True) -> tuple[int, str, str]:
        done = cli.run(list(args), self.env_a, check=check)
        return done.returncode, done.stdout, done.stderr

    def b(self, *args: str, check: bool = True) -> tuple[int, str, str]:
        done = cli.run(list(args), self.env_b, check=check)
        return done.returncode, done.stdout, done.stderr

    def cached(self) -> set[str]:
        """The digests in host B's cache."""
        return {p.name for p in self.cache_b.rglob("*") if p.is_file()}


def test_restore_after_prefetch_downloads_nothing_and_the_counter_goes_on(
    procs: ProcessTracker, tmp_path: Path, criu_path: str, moto_server: MotoServer
) -> None:
    hosts = Hosts(tmp_path, moto_server, criu_path)
    proc = procs.counter(tmp_path / "proc")
    counter = proc.counter_path
    assert counter is not None
    wait_until(lambda: read_counter(counter) >= 5, 10, "the counter to reach 5")
    hosts.a("create", "counter", "final", "--pid", str(proc.pid), "--label", "stage=final")
    wait_pid_gone(proc.pid)
    stopped_at = read_counter(counter)

    _, out, _ = hosts.b("prefetch", "counter", "--latest", "--label", "stage=final", "--json")
    first = json.loads(out)
    assert (first["target"], first["name"], first["skipped"]) == ("counter", "final", None)
    assert first["chunks_downloaded"] == first["chunks_total"] > 0
    assert first["chunks_cached"] == 0 and first["bytes_downloaded"] > 0
    assert first["cache"] == str(hosts.cache_b) and first["warning"] is None
    assert len(hosts.cached()) == first["chunks_total"]

    _, out, _ = hosts.b("prefetch", "counter", "final", "--json")
    second = json.loads(out)
    assert second["chunks_downloaded"] == 0 and second["bytes_downloaded"] == 0
    assert second["chunks_cached"] == first["chunks_total"]

    _, out, err = hosts.b("restore", "counter", "--latest", "--json")
    restored = json.loads(out)
    pid = procs.track(restored["pid"])
    assert "restoring counter/final" in err and restored["name"] == "final"
    assert restored["chunks_downloaded"] == 0 and restored["bytes_downloaded"] == 0
    assert restored["chunks_from_cache"] == first["chunks_downloaded"]
    assert pid_exists(pid)
    wait_until(lambda: read_counter(counter) >= stopped_at + 5, 10, "the counter to go on")

    _, out, _ = hosts.a("events", "counter", "--json")
    events = [(e["action"], e["host"], e["name"]) for e in json.loads(out)]
    assert events == [
        ("checkpoint", "host-a", "final"),
        ("prefetch", "host-b", "final"),
        ("prefetch", "host-b", "final"),
        ("restore", "host-b", "final"),
    ]
    assert json.loads(out)[1]["detail"]["chunks_downloaded"] == first["chunks_downloaded"]


def test_a_corrupt_object_fails_the_prefetch_and_is_not_cached(
    tmp_path: Path, moto_server: MotoServer
) -> None:
    hosts = Hosts(tmp_path, moto_server)
    files = make_image(tmp_path / "one", seed=1)
    make_image(tmp_path / "two", seed=2)
    with FakeManager(hosts.settings("host-a")) as mgr:
        mgr.create("web", "one", locator=str(tmp_path / "one"))
        mgr.create("web", "two", locator=str(tmp_path / "two"))
    manifest = Manifest.from_bytes(
        hosts.raw.get(RawStore.manifest("web", "one")), target="web", name="one"
    )
    (pages,) = [f for f in manifest.files if f.path == "pages.img"]
    bad = pages.blobs[-1]
    hosts.raw.flip_byte(RawStore.blob(bad), offset=-1)

    code, _, err = hosts.b("prefetch", "web", "one", check=False)
    assert code == 7, err
    assert f"blob {bad} of file pages.img is corrupt" in err
    assert bad not in hosts.cached()

    # The library call `cryostash migrate` makes, with a cache too small for the
    # checkpoint: it is prefetched, but the trim evicts some of it, and it says so.
    small = TransferSettings(
        cache_dir=tmp_path / "small-cache", cache_max_bytes=len(files["core.img"])
    )
    with FakeManager(replace(hosts.settings("host-b"), transfer=small)) as mgr:
        stats = mgr.prefetch("web", "two", checkpoint_dir=None)
    assert stats["chunks_downloaded"] == stats["chunks_total"] > 1
    assert stats["bytes_downloaded"] > len(files["core.img"]) and stats["duration_s"] > 0
    assert stats["chunks_uncached"] > 0
    assert "cache bound (2.9 KiB, --cache-size) is smaller than this checkpoint" in (
        stats["warning"]
    )

    code, _, err = hosts.b("--cache", "none", "prefetch", "web", "two", check=False)
    assert code == 2 and "prefetch needs the chunk cache" in err
    code, _, err = hosts.b("prefetch", "web", "--latest", "--host", "host-z", check=False)
    assert code == 3 and "no checkpoint of container web matches (host host-z)" in err
    assert hosts.b("prefetch", "web", "nope", check=False)[0] == 3


def test_a_local_store_has_nothing_to_prefetch(tmp_path: Path) -> None:
    store, catalog = tmp_path / "store", f"sqlite:///{tmp_path / 'catalog.db'}"
    make_image(tmp_path / "image")
    settings = Settings(store_url=str(store), catalog_url=catalog,
                        scratch_dir=tmp_path / "scratch", host="host-a")
    with FakeManager(settings) as mgr:
        mgr.create("web", "one", locator=str(tmp_path / "image"))
    env = cli.base_env(
        CRYOSTASH_STORE=str(store), CRYOSTASH_CATALOG=catalog,
        CRYOSTASH_SCRATCH=str(tmp_path / "scratch"), CRYOSTASH_CACHE=str(tmp_path / "cache"),
    )
    done = cli.run(["prefetch", "web", "one"], env)
    assert done.stdout == "store is on this host's disk: nothing to prefetch\n"
    shown = json.loads(cli.run(["prefetch", "web", "--latest", "--json"], env).stdout)
    assert shown["skipped"] == "local store" and shown["name"] == "one"
    assert shown["chunks_downloaded"] == shown["bytes_downloaded"] == 0
    assert not (tmp_path / "cache").exists()

