"""What only the docker engine does, against the session's private ``dockerd``
(``tests/support/container_rigs.py``): the docker side-file of a checkpoint is not
trusted (a checkpoint folder outside the image, a privileged container or host mounts
are refused unless allowed). The scenarios every engine shares (round trip, re-created
from the recorded configuration under ``--allow host-mounts``, ``--leave-running`` then a
restore into the stopped container, a dump refused by CRIU, ``--tcp-established``
refused) are in ``test_engine_conformance.py``.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.support.container_rigs import DOCKER_IMAGE as IMAGE
from tests.support.containers import Dockerd, unique


def _planted(image_dir: Path, **record: object) -> Path:
    """An image folder as a restore would fetch it, with a docker side-file of ``record``."""
    (image_dir / "checkpoint").mkdir(parents=True)
    (image_dir / "cryostash-docker.json").write_text(json.dumps(
        {"engine": "docker", "container_name": unique("cs-planted"), "image": IMAGE,
         "config": {"Image": IMAGE, "Cmd": ["sh"]}, "checkpoint": "checkpoint", **record}
    ))
    return image_dir


def test_docker_side_file_is_untrusted(dockerd: Dockerd, tmp_path: Path) -> None:
    from cryostash import IntegrityError, UsageError
    from cryostash.engines.docker import DockerEngine
    from cryostash.types import RestoreOptions

    engine = DockerEngine(socket=str(dockerd.socket))
    escape_dir = _planted(tmp_path / "a", checkpoint="/etc")
    with pytest.raises(IntegrityError, match="only 'checkpoint' is accepted"):
        engine.restore(escape_dir, RestoreOptions())
    with pytest.raises(IntegrityError):
        engine.restore(_planted(tmp_path / "b", checkpoint="../../etc"), RestoreOptions())

    hostile = {"Privileged": True, "Binds": ["/:/host"], "NetworkMode": "none"}
    image_dir = _planted(tmp_path / "c", host_config=hostile)
    with pytest.raises(UsageError) as refused:
        engine.restore(image_dir, RestoreOptions())
    message = str(refused.value)
    assert "privileged (Privileged: true)" in message and "host-mounts (/)" in message
    assert "--allow host-mounts --allow privileged" in message
    with pytest.raises(UsageError, match="privileged"):  # one allowed is not enough
        engine.restore(image_dir, RestoreOptions(allow=frozenset({"host-mounts"})))
    assert dockerd.docker("ps", "-aq").stdout.split() == []  # no container was created
