"""S3 through the ``cryostash`` CLI against the session's moto server: where credentials
come from, and clear errors (exit 6, nothing written, the process untouched) for a
missing bucket, rejected or absent credentials, an unreachable endpoint and a store
that may not be written.

moto checks credentials only inside ``moto_server.authenticating()``.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.support import cli
from tests.support.processes import ProcessTracker, free_port, pid_exists, read_counter, wait_until
from tests.support.stores import Credentials, MotoServer, RawStore


@pytest.fixture
def bucket(moto_server: MotoServer) -> str:
    return moto_server.make_bucket()


@pytest.fixture
def raw(moto_server: MotoServer, bucket: str) -> RawStore:
    """The bucket, bypassing cryostash (admin credentials; read it outside
    ``authenticating`` blocks)."""
    import s3fs

    return RawStore(s3fs.S3FileSystem(**moto_server.options(), skip_instance_cache=True), bucket)


def assert_nothing_written(tmp_path: Path, env: dict[str, str], raw: RawStore | None) -> None:
    """No object in the bucket, no catalog row, no scratch folder left."""
    if raw is not None:
        assert raw.files() == []
    if (tmp_path / "catalog.db").exists():  # a reading verb refuses a missing one
        assert json.loads(cli.run(["ls", "--json"], env).stdout) == []
        assert json.loads(cli.run(["events", "--json"], env).stdout) == []
        rows = cli.catalog_rows(env["CRYOSTASH_CATALOG"])
        assert {t: r for t, r in rows.items() if t != "alembic_version" and r} == {}
    scratch = tmp_path / "scratch"
    assert not scratch.exists() or list(scratch.iterdir()) == []


def _profile_file(tmp_path: Path, creds: Credentials) -> str:
    path = tmp_path / "aws-credentials"
    path.write_text(
        f"[cryo-test]\naws_access_key_id = {creds.key}\naws_secret_access_key = {creds.secret}\n"
    )
    return str(path)


SOURCES = ["aws-env", "storage-option-flags", "storage-options-env-json", "aws-profile"]


@pytest.mark.parametrize("source", SOURCES)
def test_credentials_and_endpoint_from_each_source_are_accepted(
    source: str,
    moto_server: MotoServer,
    bucket: str,
    raw: RawStore,
    procs: ProcessTracker,
    criu_path: str,
    tmp_path: Path,
) -> None:
    admin, endpoint = moto_server.admin, moto_server.endpoint
    proc = procs.counter(tmp_path / "proc")
    env = cli.host_env(tmp_path, criu=criu_path, store=False, cache="none")
    flags: list[str] = []
    if source == "aws-env":
        env.update(moto_server.env())
    elif source == "storage-option-flags":
        flags = [
            *("--storage-option", f"key={admin.key}"),
            *("--storage-option", f"secret={admin.secret}"),
            *("--storage-option", f"endpoint_url={endpoint}"),
        ]
    elif source == "storage-options-env-json":
        options = {"key": admin.key, "secret": admin.secret, "endpoint_url": endpoint}
        env["CRYOSTASH_STORAGE_OPTIONS"] = json.dumps(options)
    else:
        env.update(
            AWS_SHARED_CREDENTIALS_FILE=_profile_file(tmp_path, admin),
            AWS_PROFILE="cryo-test",
            AWS_ENDPOINT_URL=endpoint,
        )
    args = [*flags, "--store", f"s3://{bucket}/root", "create", "app", "cp", "--pid",
            str(proc.pid), "--criu-opt", "no-such-criu-option"]  # fmt: skip
    with moto_server.authenticating():
        done = cli.run(args, env, check=False)
    # The store accepted the credentials (probe written and removed); only then CRIU ran,
    # and refused the option (a PID that is no process is refused before the store).
    assert done.returncode == 5, done.stderr
    assert "Cannot checkpoint container app: " in done.stderr
    assert "no-such-criu-option" in done.stderr
    assert pid_exists(proc.pid)
    assert admin.secret not in done.stderr + done.stdout
    assert_nothing_written(tmp_path, env, raw)


ERRORS = ["missing-bucket", "unknown-key", "wrong-secret", "no-credentials", "read-only",
          "unreachable"]  # fmt: skip


@pytest.mark.parametrize("case", ERRORS)
def test_store_errors_fail_clearly_before_the_dump(
    case: str,
    moto_server: MotoServer,
    bucket: str,
    raw: RawStore,
    procs: ProcessTracker,
    tmp_path: Path,
) -> None:
    proc = procs.counter(tmp_path / "proc")
    assert proc.counter_path is not None
    store = f"s3://{bucket}/root"
    env = cli.host_env(tmp_path, store=False, cache="none", **moto_server.env())
    secret = moto_server.admin.secret
    if case == "missing-bucket":
        store = "s3://no-such-bucket-for-cryostash/root"
        expected = f"Error: store {store}: the bucket does not exist"
    elif case == "unknown-key":
        env.update(AWS_ACCESS_KEY_ID="AKIAUNKNOWNKEY000000")
        expected = f"Error: store {store}: the credentials were rejected (InvalidAccessKeyId: "
    elif case == "wrong-secret":
        secret = "not-the-secret-6f1d2c"
        env.update(AWS_SECRET_ACCESS_KEY=secret)
        expected = f"Error: store {store}: the credentials were rejected (SignatureDoesNotMatch: "
    elif case == "no-credentials":
        del env["AWS_ACCESS_KEY_ID"], env["AWS_SECRET_ACCESS_KEY"]
        expected = f"Error: store {store}: no credentials found"
    elif case == "read-only":
        assert moto_server.readonly is not None
        env.update(moto_server.env(moto_server.readonly))
        secret = moto_server.readonly.secret
        expected = f"Error: store {store} is not writable: permission denied"
    else:
        env.update(AWS_ENDPOINT_URL=f"http://127.0.0.1:{free_port()}")  # nobody listens
        expected = f"Error: store {store}: cannot connect to the endpoint: "
    args = ["--store", store, "create", "app", "cp", "--pid", str(proc.pid)]
    with moto_server.authenticating():
        done = cli.run(args, env, check=False)  # bounded: cli.TIMEOUT_S
    assert done.returncode == 6, done.stderr
    assert expected in done.stderr, done.stderr
    assert secret not in done.stderr + done.stdout
    # The store was checked before the dump: the process was never touched.
    assert pid_exists(proc.pid)
    at = read_counter(proc.counter_path)
    wait_until(lambda: read_counter(proc.counter_path) > at, 10, "the counter to go on")
    assert_nothing_written(tmp_path, env, raw)


def test_local_store_that_cannot_be_written_fails_before_the_dump(
    procs: ProcessTracker, tmp_path: Path
) -> None:
    proc = procs.counter(tmp_path / "proc")
    blocker = tmp_path / "blocker"
    blocker.write_text("a file, where the store's parent folder should be")
    store = blocker / "store"
    env = cli.host_env(tmp_path, store=False, cache="none")
    done = cli.run(["--store", str(store), "create", "app", "cp", "--pid", str(proc.pid)], env,
                   check=False)  # fmt: skip
    assert done.returncode == 6, done.stderr
    assert f"Error: store {store} is not writable: " in done.stderr
    assert pid_exists(proc.pid)
    assert_nothing_written(tmp_path, env, None)
    assert blocker.read_text().startswith("a file")


def test_bad_storage_options_are_usage_errors(tmp_path: Path) -> None:
    env = cli.host_env(tmp_path, store=False, cache="none")
    done = cli.run(["--storage-option", "no-equals-sign", "ls"], env, check=False)
    assert done.returncode == 2
    assert "invalid storage option #1: expected KEY=VALUE" in done.stderr
    bad_json = {**env, "CRYOSTASH_STORAGE_OPTIONS": "{not json"}
    done = cli.run(["ls"], bad_json, check=False)
    assert done.returncode == 2
    assert "CRYOSTASH_STORAGE_OPTIONS is not valid JSON" in done.stderr
    not_object = {**env, "CRYOSTASH_STORAGE_OPTIONS": '["key", "x"]'}
    done = cli.run(["ls"], not_object, check=False)
    assert done.returncode == 2
    assert "CRYOSTASH_STORAGE_OPTIONS must be a JSON object" in done.stderr
