"""The command line as a thin client of the daemon (docs/daemon.md, "The command line as a
client"): the client path imports the standard library only; ``--daemon``,
``CRYOSTASH_DAEMON`` and ``--no-daemon``; a named daemon that cannot serve is exit 13; the
default socket is used only when its daemon serves what the command resolved.

The scenarios themselves (same outputs and exit codes both ways) are
tests/test_cli_checkpoint.py, parametrized in process and through a daemon.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support import daemon_rig
from tests.support.cli import host_env
from tests.support.daemon_rig import Daemon

#: What the client path must not load (the daemon's side, or the in-process path's).
HEAVY = ("sqlalchemy", "fsspec", "botocore", "s3fs", "aiohttp", "prometheus_client")


@pytest.fixture
def daemon(tmp_path: Path, criu_path: str) -> Iterator[Daemon]:
    """A daemon serving ``TMP/cs`` (its ``home``), stopped by PID after the test."""
    with daemon_rig.running(tmp_path / "cs", criu_path) as running:
        yield running


@pytest.fixture
def home(daemon: Daemon) -> Path:
    return daemon.home


def _cli(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, *args], env=env, capture_output=True, text=True, timeout=120,
        check=False,
    )


def _env(home: Path, criu_path: str, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k != "CRYOSTASH_DAEMON"}
    return {**env, **host_env(home, criu=criu_path), **extra}


def _ls_operations(daemon: Daemon) -> float:
    return sum(
        value for (sample, labels), value in daemon.metrics().items()
        if sample == "cryostash_daemon_operations_total" and ("verb", "ls") in labels
    )


def test_the_client_path_imports_the_standard_library_only(
    daemon: Daemon, home: Path, criu_path: str
) -> None:
    done = _cli(
        _env(home, criu_path), "-X", "importtime", "-m", "cryostash",
        "--daemon", f"unix://{daemon.socket}", "ls",
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines() == ["CONTAINER   CHECKPOINT NAME"]
    imported = {
        line.split("|")[-1].strip().split(".")[0]
        for line in done.stderr.splitlines()
        if line.startswith("import time:")
    }
    assert "cryostash" in imported, "-X importtime reported nothing"
    assert not imported & set(HEAVY), sorted(imported & set(HEAVY))
    assert _ls_operations(daemon) == 1, "the ls did not go through the daemon"


def test_a_named_daemon_that_cannot_serve_is_exit_13(
    daemon: Daemon, home: Path, criu_path: str, tmp_path: Path
) -> None:
    env = _env(home, criu_path)
    missing = tmp_path / "none.sock"
    gone = _cli(env, "-m", "cryostash", "--daemon", f"unix://{missing}", "ls")
    assert gone.returncode == 13
    assert gone.stderr.startswith(f"Error: --daemon unix://{missing}: no cryostash daemon answers")

    other = _cli(
        {**env, "CRYOSTASH_DAEMON": f"unix://{daemon.socket}"},
        "-m", "cryostash", "--store", str(tmp_path / "other"), "ls",
    )
    assert other.returncode == 13
    assert f"$CRYOSTASH_DAEMON unix://{daemon.socket}: the daemon serves store " in other.stderr
    assert f"(this command: {tmp_path / 'other'})" in other.stderr
    assert "--no-daemon" in other.stderr

    both = _cli(env, "-m", "cryostash", "--daemon", str(daemon.socket), "--no-daemon", "ls")
    assert both.returncode == 2 and "--daemon and --no-daemon exclude each other" in both.stderr
    tcp = _cli(env, "-m", "cryostash", "--daemon", "tcp://127.0.0.1:9", "ls")
    assert tcp.returncode == 2 and "expected unix:///PATH" in tcp.stderr

    (home / "store").mkdir(parents=True, exist_ok=True)  # reading never creates it
    forced = _cli(
        {**env, "CRYOSTASH_DAEMON": f"unix://{missing}"}, "-m", "cryostash", "ls", "--no-daemon"
    )
    assert forced.returncode == 0 and forced.stdout.startswith("CONTAINER")
    assert _ls_operations(daemon) == 0


def test_the_default_socket_is_used_only_when_it_serves_the_same_settings(
    daemon: Daemon, home: Path, criu_path: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import cryostash.daemon.config
    from cryostash.cli.app import build_parser
    from cryostash.cli.context import Context
    from cryostash.cli.daemon_route import choose
    from cryostash.cli.parsing import merge_globals

    monkeypatch.setattr(cryostash.daemon.config, "DEFAULT_SOCKET", daemon.socket)
    monkeypatch.delenv("CRYOSTASH_DAEMON", raising=False)
    for key, value in host_env(home, criu=criu_path).items():
        monkeypatch.setenv(key, value)

    def chosen(*argv: str) -> Path | None:
        ctx = Context(merge_globals(build_parser().parse_args(argv)))
        return choose(ctx.args, ctx.settings)

    assert chosen("ls") == daemon.socket
    assert chosen("rm", "app", "cp") == daemon.socket
    assert chosen("ls", "--no-daemon") is None
    assert chosen("--store", str(tmp_path / "other"), "ls") is None
    assert chosen("--scratch", str(tmp_path / "scratch"), "ls") is None
    assert chosen("--host", "host-b", "ls") is None
    assert chosen("ls", "--checkpoint-dir", str(tmp_path / "elsewhere")) is None
    assert chosen("gc") is None  # not a verb the client routes
    assert chosen("restore", "app", "cp", "--lazy") is None  # its helper is the command's
    monkeypatch.setattr(cryostash.daemon.config, "DEFAULT_SOCKET", tmp_path / "no.sock")
    assert chosen("ls") is None
