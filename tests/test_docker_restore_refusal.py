"""``restore --engine docker`` of a checkpoint whose side-file (written by whoever can
write the store) asks beyond the allow-list: the command is refused with exit 2, the
message lists each field with its ``--allow`` word, and no container is created. The
daemon is a :class:`~tests.support.fake_dockerd.FakeDockerd` (it knows no container and
records every request): the refusal comes before any container would be created, so no
real dockerd is needed. The checkpoint is stored with the fake engine (its bytes are the
image folder a docker dump would leave) and restored with ``--engine docker``."""

from __future__ import annotations

import json
from pathlib import Path

from tests.support.cli import run
from tests.support.docker_configs import ETC_VOLUME, INSPECTED
from tests.support.fake_dockerd import fake_dockerd
from tests.support.fake_engine import FakeManager
from tests.support.setups import make_setup

HOSTILE = {
    **INSPECTED,
    "MaskedPaths": [],
    "ReadonlyPaths": [],
    "VolumesFrom": ["victim:rw"],
    "Mounts": [ETC_VOLUME],
}


def test_restore_refuses_a_hostile_host_config_before_creating_anything(
    tmp_path: Path,
) -> None:
    setup = make_setup("local-sqlite", tmp_path / "cs")
    image = tmp_path / "image"
    (image / "checkpoint").mkdir(parents=True)
    (image / "checkpoint" / "inventory.img").write_bytes(b"CRIU images would be here")
    (image / "cryostash-docker.json").write_text(json.dumps({
        "format": 1, "container_name": "web", "image": "busybox:1",
        "config": {"Image": "busybox:1", "Cmd": ["sh"]}, "host_config": HOSTILE,
        "checkpoint": "checkpoint",
    }))
    with setup.manager(FakeManager) as mgr:
        mgr.create("web", "cp1", locator=str(image), engine="docker")

    with fake_dockerd(tmp_path / "dockerd") as daemon:
        env = {**setup.cli_env(), "DOCKER_HOST": daemon.docker_host}
        done = run(["restore", "web", "cp1", "--engine", "docker"], env, check=False)
        allowed = run(
            ["restore", "web", "cp1", "--engine", "docker", "--allow", "MaskedPaths",
             "--allow", "ReadonlyPaths", "--allow", "host-mounts"], env, check=False,
        )
        bad_word = run(
            ["restore", "web", "cp1", "--engine", "docker", "--allow", "every thing"], env,
            check=False,
        )

    assert done.returncode == 2, done.stderr
    err = done.stderr
    assert "MaskedPaths (MaskedPaths: [])" in err and "ReadonlyPaths (ReadonlyPaths: [])" in err
    assert "VolumesFrom (VolumesFrom: ['victim:rw'])" in err
    assert "host-mounts (volume etc driver local" in err and "'device': '/etc'" in err
    assert (
        "--allow MaskedPaths --allow ReadonlyPaths --allow VolumesFrom --allow host-mounts"
        in err
    )
    assert "Traceback" not in err
    # one word short is still refused, naming only what is left
    assert allowed.returncode == 2 and "--allow VolumesFrom" in allowed.stderr
    assert "--allow MaskedPaths" not in allowed.stderr
    assert bad_word.returncode == 2 and "not an --allow word" in bad_word.stderr
    assert ("POST", "/containers/create") not in daemon.requests
    assert all(method == "GET" for method, _ in daemon.requests), daemon.requests
