"""The engine conformance suite: the same scenarios, end to end through the ``cryostash``
CLI, on every engine of the ``engine_rig`` fixture (criu, runc, podman, docker, and a
third-party engine installed as a package: ``tests/support/engine_rigs.py``). Two
simulated hosts share one store and catalog.

A counter that keeps its count in memory only is checkpointed, is gone, comes back here
and on the other host, and counts on from where it was dumped (a restarted one would
start again); a name taken, a checkpoint or a target that does not exist;
``--leave-running``; a failed dump leaves nothing behind and the target running;
``export`` (an archive of a podman checkpoint, refused for the others); ``rm`` empties
the store. Each engine's
own ways (runc's ``--bundle``, docker's ``--allow host-mounts``, podman's fresh storage on
the other host...) are the rig's; what only one engine does is in its own module
(``test_engine_runc.py``, ``test_engine_podman.py``, ``test_engine_docker.py``,
``test_engine_plugin.py``, ``test_cli_checkpoint.py``, ``test_criu_engine.py``).
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.support.cli import assert_nothing_left, stored_files
from tests.support.engine_rigs import EngineRig, Workload

#: The engines whose targets can run with a read-only root file system here.
READ_ONLY_ENGINES = ["runc", "podman"]


@pytest.fixture(params=READ_ONLY_ENGINES)
def read_only_rig(request: pytest.FixtureRequest, tmp_path: Path) -> EngineRig:
    from tests.support.engine_rigs import make_rig

    rig = make_rig(request.param, request, tmp_path)
    request.addfinalizer(rig.close)
    return rig


def restore_here_and_elsewhere(rig: EngineRig, w: Workload, cp: str) -> None:
    """``cp`` of the stopped ``w``: restored here under its own name, it counts on; then
    on host B (under another name where the engine can), it counts on from the same
    point; neither host keeps a scratch folder."""
    args = rig.restore_here_args(w, cp)
    here = rig.restored(w, rig.host_a.json("restore", w.target, cp, *args))
    rig.assert_goes_on(here, w.floor)
    rig.stop(here)
    there = rig.restore_elsewhere(w, cp)
    rig.assert_goes_on(there, w.floor)
    assert rig.host_a.scratch_entries() == [] and rig.host_b.scratch_entries() == []


class TestEngineConformance:
    """What every engine guarantees through the CLI."""

    def test_checkpoint_goes_on_after_restore_here_and_on_another_host(
        self, engine_rig: EngineRig, tmp_path: Path
    ) -> None:
        """The round trip, and a checkpoint that does not exist is refused by every verb
        that names one."""
        rig, host = engine_rig, engine_rig.host_a
        w = rig.start("rt")

        made = host.json("create", w.target, "cp1", *rig.create_args(w), "--label", "k=v")

        assert made["engine"] == rig.name and made["labels"] == {"k": "v"}
        rig.assert_stopped_by_dump(w)
        assert [(c["target"], c["engine"]) for c in host.json("ls")] == [(w.target, rig.name)]
        files = {f["path"] for f in host.json("inspect", w.target, "cp1")["files"]}
        assert rig.image_files <= files, files

        for verb in ("restore", "rm", "inspect"):
            missing = host.cli(verb, w.target, "nope", check=False)
            assert missing.returncode == 3, (verb, missing.stderr)
            assert f"checkpoint nope does not exist for container {w.target}" in missing.stderr
        assert [c["name"] for c in host.json("ls", w.target)] == ["cp1"]

        restore_here_and_elsewhere(rig, w, "cp1")

        events = [(e["host"], e["action"]) for e in host.json("events", w.target)]
        assert events == [("host-a", "checkpoint"), ("host-a", "restore"), ("host-b", "restore")]
        rig.check_export(w, "cp1", tmp_path / "exported.tar")
        host.cli("rm", w.target, "cp1")
        assert host.json("ls") == [] and stored_files(host.home) == [], "rm left objects"
        rig.assert_clean()

    def test_leave_running_keeps_it_going_and_the_checkpoint_restores(
        self, engine_rig: EngineRig
    ) -> None:
        """``--leave-running``, then the same name again: refused (exit 4), the target
        untouched; the checkpoint restores the state of the dump."""
        rig, host = engine_rig, engine_rig.host_a
        w = rig.start("live")

        made = host.cli("create", w.target, "live", *rig.create_args(w), "--leave-running")

        assert made.stdout.strip() == "live"  # the name, as ``docker checkpoint create``
        assert rig.running(w)
        rig.assert_goes_on(w, w.floor)
        dup = host.cli("create", w.target, "live", *rig.create_args(w), "--leave-running",
                       check=False)
        assert dup.returncode == 4, dup.stderr
        assert f"checkpoint with name live already exists for container {w.target}" in dup.stderr
        assert rig.running(w) and [c["name"] for c in host.json("ls", w.target)] == ["live"]
        back = rig.restore_after_leave_running(w, "live")
        rig.assert_goes_on(back, w.floor)  # the state of the dump
        assert host.scratch_entries() == []
        rig.assert_clean()

    def test_a_failed_dump_leaves_nothing_and_the_target_running(
        self, engine_rig: EngineRig
    ) -> None:
        rig, host = engine_rig, engine_rig.host_a
        w, extra, reasons = rig.start_undumpable("bad")

        done = host.cli("create", w.target, "cp", *rig.create_args(w), *extra, check=False)

        assert done.returncode == 5, done.stderr
        assert f"Cannot checkpoint container {w.target}: " in done.stderr
        for reason in reasons:
            assert reason in done.stderr, (reason, done.stderr)
        assert_nothing_left(host)
        assert rig.running(w)
        rig.assert_counting(w)
        rig.after_failed_dump(w)

    def test_a_missing_target_is_a_usage_error_and_leaves_nothing(
        self, engine_rig: EngineRig
    ) -> None:
        host = engine_rig.host_a

        done = host.cli("create", "no-such-ctr", "cp", *engine_rig.missing_locator(),
                        check=False)

        assert done.returncode == 2, done.stderr
        assert engine_rig.missing_message in done.stderr
        assert_nothing_left(host)  # a criu PID is refused before the store is created
        if (host.home / "store").exists():
            assert host.json("events") == []


class TestReadOnlyRoot:
    """A read-only root file system (Kubernetes' ``readOnlyRootFilesystem``; ``runc
    spec``'s default, ``podman run --read-only``) is checkpointed and restored, counting
    on, here and on another host."""

    def test_read_only_root_is_checkpointed_and_restored(self, read_only_rig: EngineRig) -> None:
        rig = read_only_rig
        w = rig.start("ro", read_only=True)
        rig.host_a.cli("create", w.target, "cp1", *rig.create_args(w))
        rig.assert_stopped_by_dump(w)
        restore_here_and_elsewhere(rig, w, "cp1")
