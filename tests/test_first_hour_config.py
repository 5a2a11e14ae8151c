"""The first hour (issue 25), configuration rows: what a new user's typo or a silent
server does, through the real ``cryostash`` command.

Row 1: a PostgreSQL catalog that accepts TCP but never answers fails after the connect
timeout (exit 8, the catalog named). Row 2: reading verbs never create a store or a
catalog. Row 3: a missing config file and unknown config keys are errors. Row 12: bad
catalog URLs are usage errors (exit 2). Row 13: secrets are masked where they appear,
not every equal word; short new passphrases are refused. Row 16: the chunk cache follows
a redirected catalog, and ``doctor`` shows it.
"""

from __future__ import annotations

import json
import os
import socket
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from cryostash import redact, resolve_settings
from cryostash.cli.app import run as run_in_process
from tests.support import cli

#: Timeout the row-1 tests configure (psycopg's minimum is 2 s).
TIMEOUT_S = 2
#: What the row-1 command must finish within (the timeout, start-up, a loaded machine).
DEADLINE_S = 60.0


@pytest.fixture
def silent_server() -> Iterator[int]:
    """A loopback port that accepts TCP connections (the kernel completes them from the
    backlog) but never reads nor answers: a PostgreSQL host that hangs."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen(16)
        yield int(sock.getsockname()[1])


def _env(tmp_path: Path, **extra: str) -> dict[str, str]:
    """A host whose store and catalog are under ``tmp_path`` (both absent until created)."""
    return cli.base_env(
        CRYOSTASH_STORE=str(tmp_path / "store"),
        CRYOSTASH_CATALOG=f"sqlite:///{tmp_path / 'catalog.db'}",
        CRYOSTASH_SCRATCH=str(tmp_path / "scratch"),
        CRYOSTASH_CACHE="none",
        **extra,
    )


# -- row 1: a catalog host that never answers -------------------------------------------


def _hangs(port: int, url_query: str, env: dict[str, str]) -> tuple[float, str, int]:
    Path(env["CRYOSTASH_STORE"]).mkdir()
    url = f"postgresql+psycopg://someone@127.0.0.1:{port}/cryostash{url_query}"
    started = time.monotonic()
    done = cli.run(["--catalog", url, "ls"], env, check=False, timeout=DEADLINE_S)
    return time.monotonic() - started, done.stderr, done.returncode


def test_row01_silent_postgresql_catalog_times_out_with_env_setting(
    silent_server: int, tmp_path: Path
) -> None:
    env = _env(tmp_path, CRYOSTASH_CATALOG_TIMEOUT=f"{TIMEOUT_S}s")
    took, stderr, code = _hangs(silent_server, "", env)
    assert code == 8, stderr
    assert f"catalog postgresql+psycopg://127.0.0.1:{silent_server}/cryostash" in stderr
    assert "timeout" in stderr.lower() and "CRYOSTASH_CATALOG_TIMEOUT" in stderr
    assert took < TIMEOUT_S + 20, took


def test_row01_connect_timeout_in_the_url_wins(silent_server: int, tmp_path: Path) -> None:
    env = _env(tmp_path, CRYOSTASH_CATALOG_TIMEOUT="1h")
    took, stderr, code = _hangs(silent_server, f"?connect_timeout={TIMEOUT_S}", env)
    assert code == 8, stderr
    assert took < TIMEOUT_S + 20, took


def test_row01_catalog_timeout_setting_refuses_nonsense(tmp_path: Path) -> None:
    done = cli.run(["ls"], _env(tmp_path, CRYOSTASH_CATALOG_TIMEOUT="soon"), check=False)
    assert done.returncode == 2 and "catalog timeout" in done.stderr


# -- row 2: reading verbs never create a store or a catalog ------------------------------


def test_row02_ls_and_verify_of_a_missing_store_name_it(tmp_path: Path) -> None:
    missing = tmp_path / "nonexistent" / "x"
    env = _env(tmp_path)
    for verb in (["ls"], ["verify"], ["verify", "--read-data"]):
        done = cli.run(["--store", str(missing), *verb], env, check=False)
        assert done.returncode == 3, (verb, done.stdout, done.stderr)
        assert f"store {missing} does not exist" in done.stderr
        assert "0 checkpoints" not in done.stdout
    assert not missing.exists() and not missing.parent.exists()
    assert not (tmp_path / "catalog.db").exists()


def test_row02_missing_catalog_is_an_error_and_not_created(tmp_path: Path) -> None:
    missing = tmp_path / "nonexistent-dir" / "x.db"
    env = _env(tmp_path)
    (tmp_path / "store").mkdir()
    for verb in (["ls"], ["events"], ["verify"]):
        done = cli.run(["--catalog", f"sqlite:///{missing}", *verb], env, check=False)
        assert done.returncode == 3, (verb, done.stderr)
        assert f"catalog sqlite:///{missing} does not exist" in done.stderr
    current = cli.run(["--catalog", f"sqlite:///{missing}", "db", "current"], env)
    assert current.stdout.startswith("none (no catalog yet")  # as doctor says it
    assert not missing.parent.exists()


def test_row02_doctor_does_not_create_the_store_or_catalog(tmp_path: Path) -> None:
    missing = tmp_path / "nonexistent" / "x"
    db = tmp_path / "nowhere" / "c.db"
    env = _env(tmp_path)
    done = cli.run(
        ["--store", str(missing), "--catalog", f"sqlite:///{db}", "doctor", "--json"],
        env,
        check=False,
    )
    checks = {c["name"]: c for c in json.loads(done.stdout)["checks"]}
    assert checks["store"]["warning"] and "does not exist yet" in checks["store"]["error"]
    assert checks["catalog"]["warning"] and "does not exist yet" in checks["catalog"]["error"]
    assert not missing.parent.exists() and not db.parent.exists()


def test_row02_writes_create_then_reads_see_an_empty_store(tmp_path: Path) -> None:
    env = _env(tmp_path)
    cli.run(["store", "init"], env)
    assert (tmp_path / "store").is_dir()
    cli.run(["db", "upgrade"], env)
    assert (tmp_path / "catalog.db").is_file()
    assert cli.run(["ls"], env).stdout.split() == ["CONTAINER", "CHECKPOINT", "NAME"]
    done = cli.run(["verify"], env)
    assert "0 checkpoints" in done.stdout


def test_row02_the_default_store_never_initialised_lists_empty(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """The defaults of a user on a fresh host (``XDG_DATA_HOME``): reading verbs list
    nothing and create nothing."""
    for key in list(os.environ):
        if key.startswith("CRYOSTASH_"):
            monkeypatch.delenv(key)
    monkeypatch.setenv("CRYOSTASH_CONFIG", os.devnull)
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "data"))
    monkeypatch.setattr("os.geteuid", lambda: 1000)
    assert run_in_process(["ls"]) == 0
    assert run_in_process(["events"]) == 0
    assert run_in_process(["verify"]) == 0
    assert run_in_process(["db", "current"]) == 0
    out = capsys.readouterr()
    assert "Error" not in out.err and "none" in out.out
    assert not (tmp_path / "data").exists()


# -- row 3: the config file ---------------------------------------------------------------


def test_row03_missing_config_file_is_an_error(tmp_path: Path) -> None:
    missing = tmp_path / "typo.toml"
    done = cli.run(["ls"], _env(tmp_path, CRYOSTASH_CONFIG=str(missing)), check=False)
    assert done.returncode == 2
    assert f"config file {missing} (named by CRYOSTASH_CONFIG) does not exist" in done.stderr


def test_row03_unknown_config_key_suggests_the_known_one(tmp_path: Path) -> None:
    config = tmp_path / "config.toml"
    config.write_text(f'stor = "{tmp_path / "elsewhere"}"\n')
    done = cli.run(["ls"], _env(tmp_path, CRYOSTASH_CONFIG=str(config)), check=False)
    assert done.returncode == 2
    assert f"config file {config}: unknown key 'stor' (did you mean store?)" in done.stderr
    config.write_text("zzz = 1\n")
    done = cli.run(["ls"], _env(tmp_path, CRYOSTASH_CONFIG=str(config)), check=False)
    assert done.returncode == 2 and "unknown key 'zzz' (known keys: cache," in done.stderr


# -- row 12: catalog URLs -----------------------------------------------------------------


def test_row12_bad_catalog_urls_are_usage_errors(tmp_path: Path) -> None:
    env = _env(tmp_path)
    (tmp_path / "store").mkdir()
    done = cli.run(["--catalog", "notaurl", "ls"], env, check=False)
    assert done.returncode == 2 and "unsupported catalog URL notaurl" in done.stderr
    done = cli.run(["--catalog", "mysql://u:pw@db.example/c", "ls"], env, check=False)
    assert done.returncode == 2
    assert "unsupported catalog URL scheme mysql; supported: sqlite, postgresql" in done.stderr
    assert "pw" not in done.stderr


# -- row 13: secrets masked where they appear, not every equal word ----------------------


def test_row13_a_wrong_passphrase_that_is_a_word_leaves_the_message_readable(
    tmp_path: Path,
) -> None:
    env = _env(tmp_path)
    cli.run(["store", "init", "--encrypt"], {**env, "CRYOSTASH_PASSWORD": "a long passphrase"})
    done = cli.run(["key", "list"], {**env, "CRYOSTASH_PASSWORD": "wrong"}, check=False)
    assert done.returncode == 11
    assert "Error: wrong passphrase for encrypted store" in done.stderr
    assert "***" not in done.stderr


def test_row13_secrets_still_masked_in_urls_options_and_as_tokens() -> None:
    redact.remember("wrong", "s3cr3t-Token")
    text = redact.redact_text(
        "postgresql://u:wrong@h/db?password=wrong failed; key s3cr3t-Token; wrong passphrase"
    )
    assert text == "postgresql://h/db?password=*** failed; key ***; wrong passphrase"
    assert redact.redact_options({"password": "wrong"}) == {"password": "***"}


def test_row13_short_new_passphrase_refused_at_store_init(tmp_path: Path) -> None:
    env = {**_env(tmp_path), "CRYOSTASH_PASSWORD": "short"}
    done = cli.run(["store", "init", "--encrypt"], env, check=False)
    assert done.returncode == 2
    assert "the new passphrase is too short: use at least 8 characters" in done.stderr
    assert "short" not in done.stderr.replace("too short", "")
    assert not (tmp_path / "store").exists() or not any((tmp_path / "store").iterdir())


# -- row 16: the chunk cache follows the catalog, doctor shows it -------------------------


def test_row16_cache_follows_a_redirected_catalog_and_doctor_shows_it(tmp_path: Path) -> None:
    throwaway = tmp_path / "throwaway"
    env = cli.base_env(CRYOSTASH_SCRATCH=str(tmp_path / "scratch"))
    done = cli.run(
        ["--store", "memory://first-hour", "--catalog", f"sqlite:///{throwaway / 'c.db'}",
         "doctor", "--json"],
        env,
        check=False,
    )
    store = {c["name"]: c for c in json.loads(done.stdout)["checks"]}["store"]
    assert store["cache"] == str(throwaway / "cache"), store
    settings = resolve_settings(
        {"catalog": f"sqlite:///{throwaway / 'c.db'}"}, {"CRYOSTASH_CONFIG": os.devnull}
    )
    assert settings.transfer.cache_dir == throwaway / "cache"
