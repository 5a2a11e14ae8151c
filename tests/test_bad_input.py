"""Bad input through the CLI: a clear message, a non-zero exit, and nothing written.

Each row runs ``cryostash`` (its entry function, in this process, so that "the PID of
cryostash itself" is known) against a fresh data folder, then checks that the store
holds no object, scratch is empty, and the catalog holds no checkpoint and no event.
A NUL byte cannot be passed in ``argv`` (``execve`` takes C strings): it is tested
through the Python API instead.
"""

from __future__ import annotations

import os
import sqlite3
from collections.abc import Callable
from pathlib import Path

import pytest

from cryostash import CheckpointManager, InvalidName, resolve_settings, verify_store
from cryostash.cli.app import run
from cryostash.redact import escape
from tests.support.cli import host_env
from tests.support.processes import ProcessTracker

Prepare = Callable[[Path], list[str]]


def _free_pid() -> int:
    """A PID no process has (searched down from the top of the PID range)."""
    top = int(Path("/proc/sys/kernel/pid_max").read_text()) - 1
    return next(pid for pid in range(top, 1, -1) if not os.path.exists(f"/proc/{pid}"))


NAME_MSG = "Invalid checkpoint ID ({}), only [a-zA-Z0-9][a-zA-Z0-9_.-] are allowed"
TARGET_MSG = "Invalid container name ({}), only [a-zA-Z0-9][a-zA-Z0-9_.-] are allowed"
BAD_NAMES = {
    "slash": "a/b",
    "dotdot": "..",
    "newline": "a\nb",
    "300-chars": "a" * 300,
    "non-ascii": "caf\u00e9",
    "leading-dot": ".hidden",
    "leading-dash": "-dash",
}


def _name_rows() -> list[tuple[str, list[str], int, str]]:
    rows = []
    for label, bad in BAD_NAMES.items():
        shown = escape(bad)  # an error is one line: a newline in it shows as \x0a
        rows += [
            (f"create-name-{label}", ["create", "--pid", "1", "--", "app", bad], 2,
             NAME_MSG.format(shown)),
            (f"create-target-{label}", ["create", "--pid", "1", "--", bad, "cp"], 2,
             TARGET_MSG.format(shown)),
            (f"restore-name-{label}", ["restore", "--", "app", bad], 2, NAME_MSG.format(shown)),
            (f"verify-target-{label}", ["verify", "--", bad], 2, TARGET_MSG.format(shown)),
            (f"rm-target-{label}", ["rm", "--", bad, "cp"], 2, TARGET_MSG.format(shown)),
        ]
    return rows


#: Stands for the PID of a live process the test starts (a dumpable one).
LIVE = "{live}"


def _other_rows(tmp: Path) -> list[tuple[str, list[str], int, str]]:
    """Rows using ``tmp/plain-file``, a regular file the test creates."""
    a_file = tmp / "plain-file"
    pid = _free_pid()
    me = os.getpid()
    return [
        ("leading-dash-without-separator", ["create", "app", "-dash", "--pid", "1"], 2,
         "the following arguments are required: NAME"),
        ("malformed-store-url", ["--store", "://nowhere", "create", "app", "cp", "--pid", "1"],
         2, "malformed store URL"),
        ("store-url-without-bucket", ["--store", "s3://", "ls"], 2, "names no bucket or path"),
        ("unknown-protocol", ["--store", "xyz://bucket/p", "create", "app", "cp", "--pid", "1"],
         2, "unknown store protocol 'xyz'"),
        ("pid-not-a-number", ["create", "app", "cp", "--pid", "12ab"], 2, "invalid PID '12ab'"),
        ("pid-that-does-not-exist", ["create", "app", "cp", "--pid", str(pid)], 2,
         f"no process with PID {pid}"),
        ("pid-of-cryostash-itself", ["create", "app", "cp", "--pid", str(me)], 2,
         f"refusing to checkpoint PID {me}: it is this cryostash process"),
        ("pid-1", ["create", "app", "cp", "--pid", "1"], 2, "refusing to checkpoint PID 1"),
        ("checkpoint-dir-is-a-file",
         ["create", "app", "cp", "--pid", "1", "--checkpoint-dir", str(a_file)], 2,
         f"{a_file} exists and is not a directory"),
        ("store-not-writable",  # a live process: a PID that is none is refused first
         ["--store", str(a_file / "store"), "create", "app", "cp", "--pid", LIVE], 6,
         f"store {a_file / 'store'} is not writable"),
        ("bad-label", ["create", "app", "cp", "--pid", "1", "--label", "novalue"], 2,
         "invalid label 'novalue': expected KEY=VALUE"),
        ("bad-grace", ["gc", "--grace", "5x"], 2, "invalid duration '5x'"),
        ("negative-grace", ["gc", "--grace=-5m"], 2, "invalid duration '-5m'"),
        ("name-without-target", ["verify", "--", "app", "a/b"], 2, NAME_MSG.format("a/b")),
    ]


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, criu_path: str) -> Path:
    """One host's data folder; the CLI entry function runs in this process, so its
    environment is set to that host's (:func:`tests.support.cli.host_env`)."""
    home = tmp_path / "cs"
    for key, value in host_env(home, criu=criu_path).items():
        if key.startswith("CRYOSTASH_"):
            monkeypatch.setenv(key, value)
    return home


def cryostash(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str]:
    """Run the CLI entry function; (exit code, stderr)."""
    try:
        code = run(list(args))
    except SystemExit as exc:  # argparse refuses before the verb runs
        code = int(exc.code or 0)
    return code, capsys.readouterr().err


def assert_nothing_written(home: Path, catalog_url: str | None = None) -> None:
    store = home / "store"
    assert not store.exists() or [p for p in store.rglob("*") if p.is_file()] == []
    scratch = home / "scratch"
    assert not scratch.exists() or list(scratch.iterdir()) == []
    db = home / "catalog.db"
    if db.exists():
        with sqlite3.connect(db) as conn:
            for table in ("checkpoints", "checkpoint_blobs", "blobs", "events"):
                assert conn.execute(f"SELECT count(*) FROM {table}").fetchone() == (0,), table


@pytest.mark.criu
@pytest.mark.parametrize(
    ("args", "code", "message"),
    [row[1:] for row in _name_rows()],
    ids=[row[0] for row in _name_rows()],
)
def test_bad_names_and_targets(
    home: Path, capsys: pytest.CaptureFixture[str], args: list[str], code: int, message: str
) -> None:
    got, err = cryostash(capsys, *args)
    assert got == code and message in err, (got, err)
    assert_nothing_written(home)


OTHER_LABELS = [row[0] for row in _other_rows(Path("/nonexistent"))]


@pytest.mark.criu
@pytest.mark.parametrize("label", OTHER_LABELS)
def test_bad_values(
    home: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    procs: ProcessTracker,
    label: str,
) -> None:
    (tmp_path / "plain-file").write_text("x")
    rows = {row[0]: row[1:] for row in _other_rows(tmp_path)}
    args, code, message = rows[label]
    if LIVE in args:
        live = str(procs.counter(tmp_path / "proc").pid)
        args = [live if a == LIVE else a for a in args]
    got, err = cryostash(capsys, *args)
    assert got == code, (label, got, err)
    assert message in err, (label, err)
    assert err.startswith("Error: ") or code == 2, (label, err)
    assert_nothing_written(home)


@pytest.mark.criu
def test_a_catalog_at_an_unknown_revision_is_refused_untouched(
    home: Path, capsys: pytest.CaptureFixture[str], procs: ProcessTracker, tmp_path: Path
) -> None:
    live = str(procs.counter(tmp_path / "proc").pid)  # a PID that is none is refused first
    assert cryostash(capsys, "db", "upgrade")[0] == 0  # creates the catalog at head
    (home / "store").mkdir()  # an empty store (reading verbs never create one)
    db = home / "catalog.db"
    with sqlite3.connect(db) as conn:
        conn.execute("UPDATE alembic_version SET version_num = '9999'")
    for args in (["ls"], ["create", "app", "cp", "--pid", live], ["gc"], ["verify"],
                 ["catalog", "rebuild"]):
        code, err = cryostash(capsys, *args)
        assert code == 9, (args, err)
        assert "is at schema revision 9999, unknown to this cryostash" in err, err
    with sqlite3.connect(db) as conn:
        assert conn.execute("SELECT version_num FROM alembic_version").fetchall() == [("9999",)]
    assert_nothing_written(home)


def test_a_nul_byte_is_refused_through_the_api(tmp_path: Path) -> None:
    """argv cannot carry NUL; the library refuses it before anything is touched."""
    settings = resolve_settings(
        {
            "store": str(tmp_path / "store"),
            "catalog": f"sqlite:///{tmp_path / 'catalog.db'}",
            "scratch": str(tmp_path / "scratch"),
        },
        env={},
    )
    with CheckpointManager(settings) as mgr:
        for target, name in (("app", "a\x00b"), ("a\x00b", "cp")):
            with pytest.raises(InvalidName, match="only \\[a-zA-Z0-9\\]"):
                mgr.create(target, name, locator="1")
            with pytest.raises(InvalidName):
                mgr.restore(target, name)
            with pytest.raises(InvalidName):
                verify_store(mgr.repository, target, name)
    assert not (tmp_path / "store").exists() and not (tmp_path / "catalog.db").exists()
    assert not (tmp_path / "scratch").exists()
