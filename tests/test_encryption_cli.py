"""Encrypted stores end to end: the real ``cryostash`` CLI, real CRIU, a real process
holding a random 64-byte marker (``tests/support/marker_prog.py``), on a local store with
SQLite and on S3 (moto) with PostgreSQL; every case beside its plain control."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.support import cli
from tests.support.encryption import (
    PASS_A,
    PASS_B,
    env_for,
    found_in,
    held_marker,
    start_marker,
    store_state,
)
from tests.support.processes import (
    ProcessTracker,
    kill_pid,
    pid_exists,
    wait_until,
)
from tests.support.setups import Setup, setup_fixture  # noqa: F401


@pytest.mark.criu
@pytest.mark.parametrize("encrypted", [True, False], ids=["encrypted", "plain-control"])
def test_marker_never_reaches_an_encrypted_store_and_restores(
    setup: Setup, procs: ProcessTracker, tmp_path: Path, criu_path: str, encrypted: bool
) -> None:
    env = env_for(setup, criu_path, PASS_A if encrypted else None)
    if encrypted:
        out = cli.run(["store", "init", "--encrypt", "--json"], env)
        assert json.loads(out.stdout)["encrypted"] is True
    proc, marker, status = start_marker(procs, tmp_path / "p")
    cli.run(["create", "secret", "one", "--pid", str(proc.pid)], env)
    wait_until(lambda: not pid_exists(proc.pid), 30, "dumped process gone")
    hits = found_in(setup.raw, marker)
    if encrypted:
        assert hits == [], hits
        assert PASS_A.encode() not in b"".join(setup.raw.get(r) for r in setup.raw.files())
        rows = json.dumps(cli.catalog_rows(setup.catalog_url), default=str)
        assert PASS_A not in rows
    else:
        assert any(h.startswith("blobs/") for h in hits), hits
    done = cli.run(["restore", "secret", "one", "--json"], env)
    pid = procs.track(json.loads(done.stdout)["pid"])
    assert held_marker(pid, status) == marker


@pytest.mark.criu
def test_tampering_is_refused_by_verify_and_restore(
    setup: Setup, procs: ProcessTracker, tmp_path: Path, criu_path: str
) -> None:
    env = env_for(setup, criu_path, PASS_A)
    cli.run(["store", "init", "--encrypt"], env)
    proc, marker, status = start_marker(procs, tmp_path / "p")
    for name in ("one", "two"):
        cli.run(["create", "secret", name, "--pid", str(proc.pid), "--leave-running"], env)
    kill_pid(proc.pid)
    raw = setup.raw
    one = raw.manifest("secret", "one")
    # The chunks checkpoint "one" uses (the catalog's references; chunk names are keyed on
    # an encrypted store, so they are the objects' names), biggest first: tampering with a
    # chunk only "two" uses would prove nothing about "one".
    rows = cli.catalog_rows(setup.catalog_url)
    one_id = next(r["id"] for r in rows["checkpoints"] if r["name"] == "one")
    used = {r["digest"] for r in rows["checkpoint_blobs"] if r["checkpoint_id"] == one_id}
    blobs = [r for r in raw.files() if r.startswith("blobs/") and r.rpartition("/")[2] in used]
    blobs.sort(key=lambda r: -len(raw.get(r)))
    big, other = blobs[0], blobs[1]

    def flip_chunk() -> None:
        raw.flip_byte(big, len(raw.get(big)) // 2)

    def flip_manifest() -> None:
        raw.flip_byte(one, len(raw.get(one)) // 2)

    def rename_chunk() -> None:
        raw.put(big, raw.get(other))

    def copy_manifest() -> None:
        raw.put(one, raw.get(raw.manifest("secret", "two")))

    for tamper in (flip_chunk, flip_manifest, rename_chunk, copy_manifest):
        saved = {r: raw.get(r) for r in (big, one)}
        tamper()
        check = cli.run(["verify", "secret", "one", "--read-data"], env, check=False)
        assert check.returncode == 7, (tamper.__name__, check.stdout, check.stderr)
        done = cli.run(["restore", "secret", "one"], env, check=False)
        assert done.returncode == 7, (tamper.__name__, done.stderr)
        assert "does not authenticate" in done.stderr or "match" in done.stderr, done.stderr
        assert not pid_exists(proc.pid), tamper.__name__  # nothing started
        for rel, data in saved.items():
            raw.put(rel, data)
    # Control: undone, the same checkpoint verifies and restores with its memory.
    cli.run(["verify", "secret", "one", "--read-data"], env)
    done = cli.run(["restore", "secret", "one", "--json"], env)
    assert held_marker(procs.track(json.loads(done.stdout)["pid"]), status) == marker


@pytest.mark.criu
@pytest.mark.parametrize("setup", ["local-sqlite"], indirect=True)
def test_passphrases_missing_wrong_two_removed(
    setup: Setup, procs: ProcessTracker, tmp_path: Path, criu_path: str
) -> None:
    env_a = env_for(setup, criu_path, PASS_A)
    cli.run(["store", "init", "--encrypt"], env_a)
    proc, marker, status = start_marker(procs, tmp_path / "p")
    before = setup.raw.files()
    for env, code, says in (
        (env_for(setup, criu_path, None), 10, "CRYOSTASH_PASSWORD"),
        (env_for(setup, criu_path, "not the passphrase"), 11, "wrong passphrase"),
    ):
        done = cli.run(["create", "secret", "one", "--pid", str(proc.pid)], env, check=False)
        assert done.returncode == code, done.stderr
        assert says in done.stderr and "not the passphrase" not in done.stderr
        assert pid_exists(proc.pid)  # not dumped: the key is checked first
        assert setup.raw.files() == before  # nothing written
        assert cli.catalog_rows(setup.catalog_url).get("checkpoints", []) == []
    cli.run(["create", "secret", "one", "--pid", str(proc.pid), "--leave-running"], env_a)

    added = cli.run(["key", "add", "--json"], {**env_a, "CRYOSTASH_NEW_PASSWORD": PASS_B})
    key_b = json.loads(added.stdout)["id"]
    env_b = env_for(setup, criu_path, PASS_B)
    keys = json.loads(cli.run(["key", "list", "--json"], env_b).stdout)
    assert len(keys) == 2 and [k["id"] for k in keys if k["current"]] == [key_b]
    key_a = next(k["id"] for k in keys if k["id"] != key_b)
    for env in (env_a, env_b):
        cli.run(["verify", "secret", "--read-data"], env)
    refused = cli.run(["key", "remove", key_b], env_b, check=False)
    assert refused.returncode == 2 and "in use" in refused.stderr
    cli.run(["key", "remove", key_a], env_b)
    gone = cli.run(["verify", "secret", "--read-data"], env_a, check=False)
    assert gone.returncode == 11, gone.stderr
    secret_file = tmp_path / "pass-b"
    secret_file.write_text(PASS_B + "\n")
    by_file = env_for(setup, criu_path, None, CRYOSTASH_PASSWORD_FILE=str(secret_file))
    by_command = env_for(setup, criu_path, None, CRYOSTASH_PASSWORD_COMMAND=f"cat {secret_file}")
    for env in (by_file, by_command):
        cli.run(["verify", "secret", "--read-data"], env)
    kill_pid(proc.pid)
    done = cli.run(["restore", "secret", "one", "--json"], by_file)
    assert held_marker(procs.track(json.loads(done.stdout)["pid"]), status) == marker


@pytest.mark.parametrize("setup", ["local-sqlite"], indirect=True)
def test_a_passphrase_set_refuses_a_plain_store(setup: Setup, tmp_path: Path) -> None:
    """A removed configuration object must not turn writes plain (downgrade)."""
    env = env_for(setup, "criu", PASS_A)
    Path(setup.store_url).mkdir(parents=True, exist_ok=True)  # a plain store, no config
    cli.run(["db", "upgrade"], env)  # and a catalog (reading verbs never create them)
    done = cli.run(["gc"], env, check=False)
    assert done.returncode == 10 and "not encrypted" in done.stderr, done.stderr
    assert cli.run(["gc"], env_for(setup, "criu", None)).returncode == 0  # control


@pytest.mark.criu
@pytest.mark.parametrize("setup", ["s3-postgresql"], indirect=True)
def test_two_hosts_share_an_encrypted_s3_store(
    setup: Setup, procs: ProcessTracker, tmp_path: Path, criu_path: str
) -> None:
    host_a = env_for(setup, criu_path, PASS_A)
    host_b = env_for(
        setup, criu_path, PASS_A, CRYOSTASH_HOST="host-b",
        CRYOSTASH_SCRATCH=str(tmp_path / "scratch-b"), CRYOSTASH_CACHE=str(tmp_path / "cache-b"),
    )
    cli.run(["store", "init", "--encrypt"], host_a)
    proc, marker, status = start_marker(procs, tmp_path / "p")
    cli.run(["create", "secret", "one", "--pid", str(proc.pid)], host_a)
    wait_until(lambda: not pid_exists(proc.pid), 30, "dumped process gone")
    assert found_in(setup.raw, marker) == []
    keyless = {k: v for k, v in host_b.items() if k != "CRYOSTASH_PASSWORD"}
    refused = cli.run(["prefetch", "secret", "one"], keyless, check=False)
    assert refused.returncode == 10 and not (tmp_path / "cache-b").exists(), refused.stderr
    fetched = json.loads(cli.run(["prefetch", "secret", "one", "--json"], host_b).stdout)
    assert fetched["chunks_downloaded"] > 0
    cache_files = [p for p in (tmp_path / "cache-b").rglob("*") if p.is_file()]
    assert cache_files and not any(marker in p.read_bytes() for p in cache_files)
    done = cli.run(["restore", "secret", "one", "--json"], host_b)
    restored = json.loads(done.stdout)
    assert restored["cache"] is True
    assert held_marker(procs.track(restored["pid"]), status) == marker
    events = json.loads(cli.run(["events", "secret", "--json"], host_a).stdout)
    assert {e["host"] for e in events} >= {"host-a", "host-b"}


@pytest.mark.criu
@pytest.mark.parametrize("setup", ["local-sqlite"], indirect=True)
def test_every_verb_needs_the_key_first_and_works_with_it(
    setup: Setup, procs: ProcessTracker, tmp_path: Path, criu_path: str
) -> None:
    env = env_for(setup, criu_path, PASS_A)
    cli.run(["store", "init", "--encrypt"], env)
    proc, marker, status = start_marker(procs, tmp_path / "p")
    for name in ("one", "two", "three"):
        cli.run(["create", "secret", name, "--pid", str(proc.pid), "--leave-running"], env)
    keyless = env_for(setup, criu_path, None)
    before = store_state(setup)
    for verb in (
        ["create", "secret", "four", "--pid", str(proc.pid)],
        ["restore", "secret", "one"], ["inspect", "secret", "one"],
        ["verify", "--read-data"], ["gc"],
        ["prune", "--keep-last", "1"], ["catalog", "rebuild"], ["key", "list"],
        ["migrate", "secret", "--pid", str(proc.pid), "--name", "moved"],
    ):
        done = cli.run(verb, keyless, check=False)
        assert done.returncode == 10 and "is encrypted" in done.stderr, (verb, done.stderr)
        assert store_state(setup) == before, verb  # nothing written, nothing removed
        assert pid_exists(proc.pid), verb  # nothing dumped
    # With the key: gc, prune, a rebuilt catalog, verify, and a migration all work.
    assert cli.run(["gc", "--json"], env).returncode == 0
    pruned = json.loads(cli.run(["prune", "--keep-last", "2", "--json"], env).stdout)
    assert pruned["removed"] == 1, pruned
    setup.lose_catalog()
    rebuilt = cli.run(["catalog", "rebuild", "--json"], env)
    assert sorted(json.loads(rebuilt.stdout)["imported"]) == ["secret/three", "secret/two"]
    cli.run(["verify", "--read-data"], env)
    moved = json.loads(
        cli.run(["migrate", "secret", "--pid", str(proc.pid), "--name", "moved", "--json"],
                env).stdout
    )
    wait_until(lambda: not pid_exists(proc.pid) or moved["pid"] == proc.pid, 30, "moved")
    assert held_marker(procs.track(moved["pid"]), status) == marker
