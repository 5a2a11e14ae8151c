"""Every text a user sees leaves through the escaping presenter, and stored text in it
is escaped; the catalog's odd rows are handled.

- ``cli/`` prints nothing but through :mod:`cryostash.cli.present` (an AST walk).
- A planted key object whose id, host and user hold ESC, BEL and a forged line shows
  escaped in ``key list``.
- A catalog row whose target and name hold an escape sequence and a newline shows
  escaped in plain ``ls``; ``verify`` reports it as one problem (exit 7) beside a sound
  checkpoint; ``rm`` removes it.
- An error quoting a stored host with a newline stays one line.
- Redaction is linear: 1 MB runs take well under the deadline (they took hours).
- A closed pipe ends ``ls`` quietly with exit 141.
- ``ls --label``/``--host`` with control characters are usage errors (exit 2).
- A catalog path that is a dangling symbolic link is refused, nothing made at its target.
"""

from __future__ import annotations

import ast
import json
import os
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

from tests.support.archives import checkpoint_archive, noise
from tests.support.cli import Host

CLI = Path(__file__).resolve().parent.parent / "src" / "cryostash" / "cli"
ESC, BEL = "\x1b", "\x07"


def test_cli_prints_only_through_the_presenter() -> None:
    found = []
    for path in sorted(CLI.glob("*.py")):
        if path.name == "present.py":
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            if not isinstance(node, ast.Call):
                continue
            func = node.func
            if isinstance(func, ast.Name) and func.id == "print":
                found.append(f"{path.name}:{node.lineno} print(")
            text = ast.unparse(func)
            if text.startswith(("sys.stdout.", "sys.stderr.")) and text.endswith(".write"):
                found.append(f"{path.name}:{node.lineno} {text}")
    assert found == []


@pytest.fixture
def host(tmp_path: Path) -> Host:
    return Host(tmp_path / "cs", "node-1")


def _imported(host: Host, tmp_path: Path, *names: str) -> None:
    for i, name in enumerate(names):
        archive = tmp_path / f"{name}.tar"
        archive.write_bytes(checkpoint_archive(noise(4096, i + 1)))
        host.cli("import", "ctr", name, str(archive))


def _sql(host: Host, statement: str, *params: object) -> None:
    with sqlite3.connect(host.home / "catalog.db") as conn:
        conn.execute(statement, params)


def test_a_planted_key_object_is_listed_escaped(host: Host) -> None:
    host.env_extra["CRYOSTASH_PASSWORD"] = "correct horse battery"
    host.cli("store", "init", "--encrypt")
    keys = host.home / "store" / "keys"
    (original,) = keys.glob("*.json")
    planted = json.loads(original.read_bytes())
    planted.update(host=f"evil{ESC}[2J{BEL}", user="u\nk9 forged  restore")
    (keys / f"k{ESC}]0;x{BEL}.json").write_text(json.dumps(planted))

    done = host.cli("key", "list")

    assert ESC not in done.stdout and BEL not in done.stdout
    assert "k\\x1b]0;x\\x07" in done.stdout and "evil\\x1b[2J\\x07" in done.stdout
    assert "u\\x0ak9 forged" in done.stdout and len(done.stdout.splitlines()) == 2


def test_odd_catalog_rows_are_escaped_reported_and_removable(
    host: Host, tmp_path: Path
) -> None:
    _imported(host, tmp_path, "good", "odd")
    bad_name = f"x{ESC}[31m\nforged"
    _sql(host, "UPDATE checkpoints SET target = ?, name = ? WHERE name = 'odd'",
         f"t{ESC}[2J", bad_name)

    shown = host.cli("ls").stdout
    assert ESC not in shown and "t\\x1b[2J" in shown and "x\\x1b[31m\\x0aforged" in shown
    assert len(shown.splitlines()) == 3  # the header and two rows: no forged line

    report = host.cli("verify", check=False)
    assert report.returncode == 7, report.stderr  # problems found (docs/cli.md)
    assert "invalid-name" in report.stdout or "name rule" in report.stdout
    assert ESC not in report.stdout + report.stderr
    problems = json.loads(host.cli("verify", "--json", check=False).stdout)["problems"]
    assert [p["kind"] for p in problems] == ["invalid-name"]

    host.cli("rm", f"t{ESC}[2J", bad_name)
    assert [c["name"] for c in host.json("ls")] == ["good"]
    assert host.cli("verify").returncode == 0


def test_an_error_quoting_stored_text_stays_one_line(host: Host, tmp_path: Path) -> None:
    _imported(host, tmp_path, "cp1")
    _sql(host, "UPDATE checkpoints SET status = 'pending', host = ?, owner_pid = NULL, "
         "lease_expires_at = '2999-01-01 00:00:00.000000'", "evil\nError: forged")

    again = host.cli("import", "ctr", "cp1", str(tmp_path / "cp1.tar"), check=False)

    assert again.returncode == 4, again.stderr
    assert again.stderr.count("\n") == 1 and "host evil\\x0aError: forged" in again.stderr


def test_redaction_of_megabyte_runs_is_linear() -> None:
    code = (
        "import time; from cryostash.redact import redact_text as r\n"
        "run = 'a' * 1_000_000\n"
        "for text in (run, run + '=v', 's3://' + run, 'x-' + run + ' token=t', '.' * 10**6):\n"
        "    assert len(r(text)) >= 3\n"
    )
    done = subprocess.run([sys.executable, "-c", code], timeout=30, check=False)
    assert done.returncode == 0


def test_a_closed_pipe_ends_quietly_with_141(host: Host, tmp_path: Path) -> None:
    _imported(host, tmp_path, "cp1")
    read_end, write_end = os.pipe()
    os.close(read_end)  # the reader is gone before cryostash writes (as after `| head`)
    try:
        done = subprocess.run([sys.executable, "-m", "cryostash", "ls", "--json"],
                              stdout=write_end, stderr=subprocess.PIPE, env=host.env(),
                              timeout=120, check=False)
    finally:
        os.close(write_end)
    assert (done.returncode, done.stderr) == (141, b"")


@pytest.mark.parametrize(
    "flag", [["--label", f"k=v{ESC}[2J"], ["--label", "k\n=v"], ["--host", f"h{BEL}"]]
)
def test_filters_with_control_characters_are_usage_errors(host: Host, flag: list[str]) -> None:
    done = host.cli("ls", *flag, check=False)
    assert done.returncode == 2 and "control characters are not allowed" in done.stderr


def test_a_catalog_path_that_is_a_dangling_link_is_refused(host: Host, tmp_path: Path) -> None:
    (host.home / "store").mkdir(parents=True)  # the store is there: the catalog is at fault
    elsewhere = tmp_path / "elsewhere.db"
    (host.home / "catalog.db").symlink_to(elsewhere)

    done = host.cli("ls", check=False)

    assert done.returncode == 8, done.stderr
    assert "symbolic link to nothing" in done.stderr
    assert not elsewhere.exists()
