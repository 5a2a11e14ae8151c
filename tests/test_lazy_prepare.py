"""``prepare_lazy``: the helper of a lazy restore started ahead (``migrate --lazy`` starts it
before the final dump, so that its start is not downtime). A prepared helper that is
cancelled, or told to go for a checkpoint that does not exist, must end without leaving a
process or a scratch folder behind, and ``go`` must say why nothing was restored."""

from __future__ import annotations

from pathlib import Path

import pytest

from cryostash import Settings
from cryostash.errors import CheckpointNotFound, UsageError
from cryostash.repository import Repository
from cryostash.repository.lazy_helper import prepare_lazy
from tests.support.processes import is_dead, wait_until

pytestmark = pytest.mark.criu


def repository(tmp_path: Path, criu: str) -> Repository:
    return Repository(
        Settings(
            store_url=str(tmp_path / "store"), catalog_url=f"sqlite:///{tmp_path / 'c.db'}",
            scratch_dir=tmp_path / "scratch", host="host-a", criu_path=criu,
        )
    )


def assert_helper_gone(tmp_path: Path, pid: int | None) -> None:
    assert pid is not None
    wait_until(lambda: is_dead(pid), 30, "the prepared helper to exit")
    scratch = tmp_path / "scratch"
    assert not scratch.exists() or not list(scratch.iterdir())


def test_a_cancelled_helper_exits_without_restoring(tmp_path: Path, lazy_criu: str) -> None:
    with repository(tmp_path, lazy_criu) as repo:
        launch = prepare_lazy(repo, "app", "final", engine="criu")
        assert launch.helper_pid is not None and not is_dead(launch.helper_pid)
        launch.cancel()
        assert_helper_gone(tmp_path, launch.helper_pid)
        with pytest.raises(UsageError, match="already started or cancelled"):
            launch.go()
        assert repo.reader.events() == []  # nothing restored, nothing recorded


def test_go_for_a_missing_checkpoint_says_so(tmp_path: Path, lazy_criu: str) -> None:
    with repository(tmp_path, lazy_criu) as repo:
        launch = prepare_lazy(repo, "app", "never-made", engine="criu")
        with pytest.raises(CheckpointNotFound, match="never-made"):
            launch.go()
        assert_helper_gone(tmp_path, launch.helper_pid)
