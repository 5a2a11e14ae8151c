"""Write-only hosts end to end: the real ``cryostash`` CLI, real CRIU, a real process
holding a random 64-byte marker. Writer hosts (``key add --writer``) create checkpoints
that deduplicate against each other and against the store, and can read none of them
(exit 12, nothing written, nothing started); a restore host restores what they made."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from tests.support import cli
from tests.support.encryption import (
    PASS_A,
    env_for,
    found_in,
    held_marker,
    start_marker,
    store_state,
)
from tests.support.processes import ProcessTracker, kill_pid, pid_exists, wait_until
from tests.support.setups import Setup, setup_fixture  # noqa: F401

PASS_W = "a writer's passphrase, for disaster-recovery hosts"


def _stats(out: str) -> dict[str, Any]:
    stats: dict[str, Any] = json.loads(out)["stats"]
    return stats


@pytest.mark.criu
@pytest.mark.parametrize("setup", ["local-sqlite", "s3-postgresql"], indirect=True)
def test_writer_hosts_add_and_dedup_but_only_the_restore_host_reads(
    setup: Setup, procs: ProcessTracker, tmp_path: Path, criu_path: str
) -> None:
    restore = env_for(setup, criu_path, PASS_A)
    made = json.loads(cli.run(["store", "init", "--encrypt", "--write-only-keys", "--json"],
                              restore).stdout)
    assert made["encrypted"] is True and made["write_only_keys"] is True
    added = cli.run(["key", "add", "--writer", "--json"],
                    {**restore, "CRYOSTASH_NEW_PASSWORD": PASS_W})
    assert json.loads(added.stdout)["kind"] == "writer"
    writer_a = env_for(setup, criu_path, PASS_W, CRYOSTASH_HOST="writer-a",
                       CRYOSTASH_SCRATCH=str(tmp_path / "scratch-a"))
    writer_b = env_for(setup, criu_path, PASS_W, CRYOSTASH_HOST="writer-b",
                       CRYOSTASH_SCRATCH=str(tmp_path / "scratch-b"))
    keys = json.loads(cli.run(["key", "list", "--json"], writer_a).stdout)
    assert sorted(k["kind"] for k in keys) == ["restore", "writer"]
    assert [k["kind"] for k in keys if k["current"]] == ["writer"]

    proc, marker, status = start_marker(procs, tmp_path / "p")
    one = cli.run(["create", "secret", "one", "--pid", str(proc.pid), "--leave-running",
                   "--json"], writer_a)
    first = _stats(one.stdout)
    assert first["chunks_new"] > 0
    # Another writer host, the same process: its chunks are found in the store.
    two = cli.run(["create", "secret", "two", "--pid", str(proc.pid), "--json"], writer_b)
    second = _stats(two.stdout)
    assert second["chunks_unique"] > 0
    deduplicated = second["chunks_unique"] - second["chunks_new"]
    assert deduplicated > 0 and second["bytes_new"] * 2 < second["bytes_scanned"], second
    wait_until(lambda: not pid_exists(proc.pid), 30, "dumped process gone")
    assert found_in(setup.raw, marker) == []
    assert PASS_W.encode() not in b"".join(setup.raw.get(r) for r in setup.raw.files())
    assert PASS_W not in json.dumps(cli.catalog_rows(setup.catalog_url), default=str)

    # Writers read nothing: their own checkpoint or the other writer's.
    before = store_state(setup)
    for env in (writer_a, writer_b):
        for verb in (
            ["restore", "secret", "one"], ["restore", "secret", "two"],
            ["inspect", "secret", "one"], ["verify", "--read-data"], ["verify"],
            ["gc"], ["catalog", "rebuild"],
            ["export", "secret", "one", "-o", str(tmp_path / "out.tar")],
            ["migrate", "secret", "--pid", str(proc.pid), "--name", "moved"],
            ["key", "add", "--new-password-file", "/dev/null"],
        ):
            done = cli.run(verb, env, check=False)
            assert done.returncode == 12, (verb, done.returncode, done.stderr)
            assert "writer key" in done.stderr and PASS_W not in done.stderr, done.stderr
            assert store_state(setup) == before, verb  # nothing written, nothing removed
            assert not pid_exists(proc.pid), verb  # nothing restored
    assert not (tmp_path / "out.tar").exists()
    # prefetch: a no-op on the local disk; on S3 it needs the manifest: refused.
    cached = {**writer_a, "CRYOSTASH_CACHE": str(tmp_path / "cache-a")}
    fetched = cli.run(["prefetch", "secret", "two"], cached, check=False)
    local = "://" not in setup.store_url
    assert fetched.returncode == (0 if local else 12), fetched.stderr
    assert store_state(setup) == before and not (tmp_path / "cache-a").exists()

    # The restore host verifies, restores, gc's and rebuilds what the writers made.
    cli.run(["verify", "--read-data"], restore)
    done = cli.run(["restore", "secret", "two", "--json"], restore)
    pid = procs.track(json.loads(done.stdout)["pid"])
    assert held_marker(pid, status) == marker
    kill_pid(pid)
    assert cli.run(["gc", "--json"], restore).returncode == 0
    setup.lose_catalog()
    restore = env_for(setup, criu_path, PASS_A)  # the new (empty) catalog
    rebuilt = json.loads(cli.run(["catalog", "rebuild", "--json"], restore).stdout)
    assert sorted(rebuilt["imported"]) == ["secret/one", "secret/two"]
    cli.run(["verify", "secret", "one", "--read-data"], restore)


@pytest.mark.parametrize("setup", ["local-sqlite"], indirect=True)
def test_writer_keys_need_a_write_only_store(setup: Setup) -> None:
    env = env_for(setup, "criu", PASS_A)
    refused = cli.run(["store", "init", "--write-only-keys"], env, check=False)
    assert refused.returncode == 2 and "--encrypt" in refused.stderr, refused.stderr
    cli.run(["store", "init", "--encrypt"], env)
    done = cli.run(["key", "add", "--writer"], {**env, "CRYOSTASH_NEW_PASSWORD": PASS_W},
                   check=False)
    assert done.returncode == 2 and "write-only keys" in done.stderr, done.stderr
    keys = json.loads(cli.run(["key", "list", "--json"], env).stdout)
    assert [k["kind"] for k in keys] == ["restore"]
