"""Secrets never shown, recorded or handed to a child process.

A table of secret-bearing inputs (S3 user-info in the store URL; ``key``/``secret``
storage options from ``CRYOSTASH_STORAGE_OPTIONS_FILE``; ``password`` in the catalog URL,
as user-info and as ``?password=``, from ``CRYOSTASH_CATALOG_FILE``; the AWS secret in the
environment) x every verb, succeeding and failing, through ``python -m cryostash``
against the session's moto S3 server and PostgreSQL server, with real CRIU. The secret
must appear in no stdout or stderr (``--json`` included), no catalog row, no stored
object, and neither the environment nor the command line of the CRIU child (CRIU is
run through a wrapper that records both, then ``exec``s it).
"""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy.engine import make_url

from tests.support import postgres
from tests.support.cli import base_env, catalog_rows, run
from tests.support.processes import ProcessTracker, read_counter, wait_until

SECRET = "Zq8-s3cr3t-Xy71"  # each row hides this value somewhere
KEY_ID = "AKIAUSERINFO18"


def _criu_wrapper(tmp_path: Path, criu_path: str) -> tuple[Path, Path]:
    """A ``criu`` that appends its environment and argv to a log, then execs CRIU."""
    folder, log = tmp_path / "wrap", tmp_path / "criu-child.log"
    folder.mkdir()
    script = folder / "criu"
    script.write_text(
        "#!/bin/sh\n"
        f"tr '\\0' '\\n' < /proc/$$/environ >> {log}\n"
        f'echo "$@" >> {log}\n'
        f'exec {criu_path} "$@"\n'
    )
    script.chmod(script.stat().st_mode | stat.S_IXUSR)
    return script, log


def _row_env(
    row: str, tmp_path: Path, moto: dict[str, Any], pg: postgres.PostgresServer, bucket: str
) -> dict[str, str]:
    url = make_url(pg.create_database())
    catalog = url.render_as_string(hide_password=False)
    store = f"s3://{bucket}/root"
    env = base_env(AWS_ENDPOINT_URL=str(moto["endpoint_url"]))
    creds = {"AWS_ACCESS_KEY_ID": str(moto["key"]), "AWS_SECRET_ACCESS_KEY": str(moto["secret"])}
    if row == "s3-userinfo":  # s3fs does not take credentials from a URL: every verb fails
        store = f"s3://{KEY_ID}:{SECRET}@{bucket}/root"
    elif row == "storage-options":
        options = tmp_path / "store.json"
        options.write_text(json.dumps({"key": KEY_ID, "secret": SECRET}))
        env["CRYOSTASH_STORAGE_OPTIONS_FILE"] = str(options)
    elif row == "catalog-password":  # trust authentication: the password is not checked
        env.update(creds)
        secret_url = url.set(password=SECRET).render_as_string(hide_password=False)
        (tmp_path / "catalog.url").write_text(f"{secret_url}?password={SECRET}\n")
        env["CRYOSTASH_CATALOG_FILE"] = str(tmp_path / "catalog.url")
        catalog = ""
    elif row == "aws-env":
        env.update(AWS_ACCESS_KEY_ID=KEY_ID, AWS_SECRET_ACCESS_KEY=SECRET)
    if row != "catalog-password" and row != "aws-env":
        env.update(AWS_ACCESS_KEY_ID="unused-key", AWS_SECRET_ACCESS_KEY="unused-secret")
    env.update(
        CRYOSTASH_STORE=store,
        CRYOSTASH_SCRATCH=str(tmp_path / "scratch"),
        CRYOSTASH_HOST="host-a",
        CRYOSTASH_CACHE="none",
    )
    if catalog:
        env["CRYOSTASH_CATALOG"] = catalog
    return env


@pytest.mark.parametrize("row", ["s3-userinfo", "storage-options", "catalog-password", "aws-env"])
def test_a_secret_appears_nowhere(
    row: str,
    tmp_path: Path,
    moto_endpoint: dict[str, Any],
    pg_server: postgres.PostgresServer,
    criu_path: str,
    procs: ProcessTracker,
) -> None:
    import s3fs

    bucket = f"cs-secrets-{os.getpid()}-{row}"
    s3fs.S3FileSystem(**moto_endpoint).mkdir(bucket)
    env = _row_env(row, tmp_path, moto_endpoint, pg_server, bucket)
    wrapper, child_log = _criu_wrapper(tmp_path, criu_path)
    env["CRYOSTASH_CRIU"] = str(wrapper)
    proc = procs.counter(tmp_path / "p")
    assert proc.counter_path is not None
    wait_until(lambda: read_counter(proc.counter_path) >= 3, 10, "counter to count")

    outputs: list[str] = []
    codes: dict[str, int] = {}

    def cli(*args: str, store: str | None = None) -> None:
        done = run(list(args), env if store is None else {**env, "CRYOSTASH_STORE": store},
                   check=False)
        assert "Traceback" not in done.stderr, done.stderr
        outputs.append(done.stdout + done.stderr)
        codes[" ".join(args)] = done.returncode

    cli("create", "app", "cp", "--pid", str(proc.pid), "--leave-running", "--label", "t=1")
    works = row != "s3-userinfo"  # botocore refuses the bucket name, repeating the URL
    assert codes[f"create app cp --pid {proc.pid} --leave-running --label t=1"] == (
        0 if works else 6
    ), outputs[-1]
    for verb in (
        ["ls", "--json"], ["ls"], ["inspect", "app", "cp"], ["inspect", "app", "cp", "--json"],
        ["events", "--json"], ["events"], ["verify"], ["verify", "--json"], ["gc", "--dry-run"],
        ["catalog", "rebuild"], ["doctor"], ["doctor", "--json"], ["prefetch", "app", "cp"],
        ["restore", "app", "missing"], ["rm", "app", "missing"], ["inspect", "app", "missing"],
        ["create", "app", "cp2", "--pid", "4194303"],  # no such process: exit 2
        ["prune", "app", "--keep-last", "5", "--dry-run"], ["db", "current"],
    ):
        cli(*verb)
    # A store that fails: a missing bucket (exit 6), with the secret still in the URL.
    broken = env["CRYOSTASH_STORE"].replace(bucket, f"{bucket}-missing")
    cli("ls", store=broken)
    cli("create", "app", "cp3", "--pid", str(proc.pid), "--leave-running", store=broken)
    cli("doctor", "--json", store=broken)
    if works:
        assert codes["create app cp2 --pid 4194303"] == 2
        assert codes["restore app missing"] == 3 and codes["ls --json"] == 0

    for text in outputs:
        assert SECRET not in text, text
        assert KEY_ID not in text or row in ("catalog-password",), text
    rows = json.dumps(catalog_rows(_catalog_url(env)), default=str)
    assert ('"checkpoint"' in rows) == works and SECRET not in rows
    fs = s3fs.S3FileSystem(**moto_endpoint)
    assert bool(fs.find(bucket)) == works
    for key in fs.find(bucket):
        assert SECRET.encode() not in fs.cat_file(key), key
    child = child_log.read_text() if child_log.exists() else ""
    assert "dump" in child or not works, "the CRIU wrapper was not run"
    assert SECRET not in child and "AWS_" not in child and "CRYOSTASH_" not in child


def _catalog_url(env: dict[str, str]) -> str:
    if "CRYOSTASH_CATALOG" in env:
        return env["CRYOSTASH_CATALOG"]
    text = Path(env["CRYOSTASH_CATALOG_FILE"]).read_text().strip()
    return text.partition("?")[0]
