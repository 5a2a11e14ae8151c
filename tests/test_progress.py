"""Progress bars: tqdm on stderr when it is a terminal and not ``--json``; the manager
hands the transfers a callback per phase."""

from __future__ import annotations

import io
import json
from pathlib import Path

import pytest

from cryostash.cli import progress
from cryostash.config import Settings
from tests.support import cli
from tests.support.fake_engine import FakeManager, make_image
from tests.support.processes import ProcessTracker, kill_pid, wait_until
from tests.support.terminal import on_terminal


class _Tty(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_bars_only_on_a_terminal_and_never_with_json() -> None:
    assert progress.wanted(False, _Tty())
    assert not progress.wanted(True, _Tty())
    assert not progress.wanted(False, io.StringIO())
    closed = io.StringIO()
    closed.close()
    assert not progress.wanted(False, closed)
    assert progress.bars(False) is None
    assert isinstance(progress.bars(True), progress.Bars)


def test_a_bar_counts_bytes_and_removes_itself_when_done(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    err = _Tty()
    monkeypatch.setattr("sys.stderr", err)
    bars = progress.Bars()
    bar = bars("upload")
    bar.set_size(3 << 20)
    bar.relative_update(1 << 20)
    bar.relative_update(-(1 << 20))  # a failed attempt taken back
    assert not bar.closed
    assert "upload" in err.getvalue()
    bar.relative_update(3 << 20)
    assert bar.closed
    empty = bars("download")
    empty.set_size(0)  # nothing to transfer: gone at once
    assert empty.closed
    left = bars("download")
    left.set_size(10)
    bars.close()  # e.g. after an error
    assert left.closed


def test_a_phase_without_a_count_spins_and_counted_phases_show_their_unit(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    err = _Tty()
    monkeypatch.setattr("sys.stderr", err)
    bars = progress.Bars()
    dump = bars("dump")
    assert isinstance(dump, progress.Spinner)
    marks = "|/-\\"
    wait_until(lambda: sum(m in err.getvalue() for m in marks) >= 2, 10, "the spinner to turn")
    assert "dump | 00:0" in err.getvalue() and "dump / 00:0" in err.getvalue()
    dump.close()
    assert dump.closed and not dump._thread.is_alive()
    blobs = bars("gc-blobs")
    blobs.set_size(3)
    blobs.relative_update(1)
    assert "gc: blobs deleted:   0%" in err.getvalue() and "0/3 [" in err.getvalue()
    bars.write("waiting up to 10 s for PID 1")
    assert "waiting up to 10 s for PID 1\n" in err.getvalue()
    bars.close()
    assert blobs.closed


class _Recorder:
    def __init__(self) -> None:
        self.size: int | None = None
        self.value = 0

    def set_size(self, size: int | None) -> None:
        self.size = size

    def relative_update(self, inc: int = 1) -> None:
        self.value += inc


def test_the_manager_reports_upload_and_download_progress(tmp_path: Path) -> None:
    files = make_image(tmp_path / "image")
    made: dict[str, _Recorder] = {}

    def factory(phase: str) -> _Recorder:
        made[phase] = _Recorder()
        return made[phase]

    settings = Settings(
        store_url=str(tmp_path / "store"),
        catalog_url=f"sqlite:///{tmp_path / 'catalog.db'}",
        scratch_dir=tmp_path / "scratch",
        host="host-a",
    )
    total = sum(len(data) for data in set(files.values()))
    with FakeManager(settings, progress=factory) as mgr:
        mgr.create("app", "cp1", locator=str(tmp_path / "image"))
        assert made["upload"].size == made["upload"].value == total
        mgr.restore("app", "cp1", engine_args=[str(tmp_path / "back")])
        size = sum(len(data) for data in files.values())
        assert made["download"].size == made["download"].value == size


def test_the_cli_draws_bars_on_a_terminal_only_and_never_with_json(
    criu_path: str, procs: ProcessTracker, tmp_path: Path
) -> None:
    env = cli.host_env(tmp_path, criu=criu_path, cache="none")
    proc = procs.counter(tmp_path / "proc")
    pid = str(proc.pid)

    code, out, seen = on_terminal(["create", "app", "cp1", "--pid", pid, "--leave-running"], env)
    assert (code, out) == (0, "cp1\n")
    assert b"upload" in seen and b"%|" in seen
    assert b"dump " in seen and b"00:0" in seen  # CRIU dumping: a spinner, the time elapsed
    code, out, seen = on_terminal(
        ["create", "app", "cp2", "--pid", pid, "--leave-running", "--json"], env
    )
    assert code == 0 and json.loads(out)["name"] == "cp2"
    assert seen == b""
    piped = cli.run(["create", "app", "cp3", "--pid", pid, "--leave-running"], env)
    assert piped.stderr == ""

    kill_pid(proc.pid)
    code, out, seen = on_terminal(["restore", "app", "cp1"], env)
    assert code == 0, seen
    procs.track(int(out))
    assert b"download" in seen and b"%|" in seen
