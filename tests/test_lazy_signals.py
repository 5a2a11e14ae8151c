"""The lazy-restore helper signalled while pages are missing (real CRIU, S3 on moto).

A pattern process of 128 MiB (64 MiB of it random) is dumped to S3 and restored lazily
through a :class:`CutoffProxy` in hold mode: once the eager files and 32 MiB more have
reached cryostash, the proxy forwards nothing more (connections stay open), so at least
32 MiB of the random memory has certainly not arrived when the test acts (decided by the
bytes forwarded, not by time):

- SIGTERM to the helper: the restored process is killed, ``restore-failed`` names the
  signal, no FUSE mount (``/proc/self/mountinfo``) and no scratch folder are left;
- SIGKILL to the helper: its mount and ``lazy-*`` scratch folder stay, and ``gc --grace
  0`` detaches the one, removes the other and says so (text and ``--json``).
"""

from __future__ import annotations

import json
import os
import signal
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.support import cli
from tests.support.cutoff_proxy import CutoffProxy
from tests.support.lazy_s3 import dumped_to_s3, eager_bytes, lazy_events
from tests.support.processes import ProcessTracker, is_dead, wait_until
from tests.support.stores import MotoServer

pytestmark = pytest.mark.criu

#: Bytes of pages let through after the eager files (the random memory is 64 MiB).
LET_THROUGH = 32 << 20


def mounts_in(folder: Path) -> list[str]:
    """Mount points inside ``folder``, from this process's mount table."""
    inside = str(folder) + "/"
    points = [line.split()[4] for line in Path("/proc/self/mountinfo").read_text().splitlines()]
    return [p for p in points if p.startswith(inside)]


def scratch_left(tmp_path: Path) -> list[str]:
    scratch = tmp_path / "scratch"
    return sorted(p.name for p in scratch.iterdir()) if scratch.exists() else []


def children(pid: int) -> list[int]:
    """Direct children of ``pid``."""
    found = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                stat = Path(f"/proc/{entry}/stat").read_text()
            except OSError:
                continue
            if int(stat[stat.rindex(")") + 2 :].split()[1]) == pid:
                found.append(int(entry))
    return found


@pytest.fixture
def held_restore(
    procs: ProcessTracker, tmp_path: Path, lazy_criu: str, moto_server: MotoServer
) -> Iterator[tuple[dict[str, str], dict[str, Any], CutoffProxy]]:
    """A lazy restore running, its pages held back: (env, restore output, proxy)."""
    env, _store_url, pid, upstream = dumped_to_s3(procs, tmp_path, lazy_criu, moto_server)
    budget = eager_bytes(env) + LET_THROUGH
    with CutoffProxy(upstream, budget, hold=True) as proxy:
        via_proxy = {**env, "AWS_ENDPOINT_URL": proxy.endpoint}
        out = json.loads(cli.run(["restore", "pat", "one", "--lazy", "--json"], via_proxy).stdout)
        assert procs.track(int(out["pid"])) == pid
        wait_until(proxy.held.is_set, 120, "the proxy to hold the pages back")
        assert proxy.forwarded == budget  # so >= 32 MiB of random memory is missing
        assert not [e for e in lazy_events(env) if e["action"] == "restore"]
        assert not is_dead(pid)
        yield env, out, proxy


def test_sigterm_kills_the_process_records_the_signal_and_cleans_up(
    tmp_path: Path, held_restore: tuple[dict[str, str], dict[str, Any], CutoffProxy]
) -> None:
    env, out, proxy = held_restore
    pid, helper = int(out["pid"]), int(out["helper_pid"])
    assert mounts_in(tmp_path / "scratch")  # the view is mounted while the restore runs
    os.kill(helper, signal.SIGTERM)
    failed = wait_until(
        lambda: [e for e in lazy_events(env) if e["action"] == "restore-failed"], 60,
        "the restore-failed event",
    )
    assert is_dead(pid), "the restored process still runs on missing pages"
    detail = failed[0]["detail"]
    assert "SIGTERM" in detail["error"], detail
    assert detail["killed"] is True and detail["pid"] == pid
    proxy.close()  # the helper's held fetches end
    wait_until(lambda: is_dead(helper), 60, "the helper to exit")
    assert not mounts_in(tmp_path / "scratch")
    assert scratch_left(tmp_path) == []
    assert not [e for e in lazy_events(env) if e["action"] == "restore"]


def test_gc_removes_what_a_sigkilled_helper_left(
    tmp_path: Path, held_restore: tuple[dict[str, str], dict[str, Any], CutoffProxy]
) -> None:
    env, out, proxy = held_restore
    helper = int(out["helper_pid"])
    daemons = children(helper)  # criu lazy-pages: stopped by this test
    try:
        os.kill(helper, signal.SIGKILL)
        wait_until(lambda: is_dead(helper), 30, "the helper to die")
        proxy.close()
        left = scratch_left(tmp_path)
        assert len(left) == 1 and left[0].startswith("lazy-pat-one-"), left
        folder = tmp_path / "scratch" / left[0]
        assert mounts_in(folder) == [str(folder / "mnt")]
        dry = json.loads(cli.run(["gc", "--grace", "0", "--dry-run", "--json"], env).stdout)
        assert dry["mounts_unmounted"] == [str(folder / "mnt")]
        assert mounts_in(folder)  # a dry run changes nothing
        text = cli.run(["gc", "--grace", "0"], env).stdout
        assert f"unmounted {folder / 'mnt'}" in text and f"removed scratch folder {folder}" in text
        assert not mounts_in(tmp_path / "scratch")
        assert scratch_left(tmp_path) == []
        again = json.loads(cli.run(["gc", "--grace", "0", "--json"], env).stdout)
        assert again["mounts_unmounted"] == [] and again["scratch_deleted"] == []
    finally:
        for daemon in daemons:
            if not is_dead(daemon):
                os.kill(daemon, signal.SIGKILL)
