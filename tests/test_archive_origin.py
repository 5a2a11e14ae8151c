"""A CRI-O checkpoint archive made as checkpointctl's tests make theirs: a real CRIU dump
of a process tree holding a zombie and a stopped child (``piggie --zombie``), CRI-O's
``config.dump``/``spec.dump`` beside it, packed with ``tar -C DIR -cf x.tar .`` (``./``
members). Imported, it is recorded as CRI-O's with the node's host name, kernel and CRIU's
statistics from the archive; its tree reads with the zombie shown Dead; it exports byte for
byte; ``restore`` names the engine that restores it. Real CRIU, the CLI as a process.
"""

from __future__ import annotations

import json
import re
import socket
import tarfile
from pathlib import Path

from tests.support.cli import Host
from tests.support.containers import run
from tests.support.processes import ProcessTracker

SPEC = {
    "ociVersion": "1.0.2",
    "annotations": {
        "io.container.manager": "cri-o",
        "io.kubernetes.cri-o.Metadata": json.dumps({"name": "piggie"}),
        "io.kubernetes.pod.name": "piggies",
        "io.kubernetes.pod.namespace": "farm",
        "io.kubernetes.container.name": "piggie",
    },
}
CONFIG = {
    "id": "0f1e2d3c4b5a",
    "name": "k8s_piggie_piggies_farm_0",
    "rootfsImageName": "quay.io/example/piggie:1",
    "runtime": "runc",
    "createdTime": "2026-03-04T05:06:07.123456789Z",
    "checkpointedTime": "2026-03-04T05:16:17.987654321Z",
}
#: What the node's line of CRIU's log is rewritten to: another node, another kernel.
NODE, KERNEL = "node-7.farm", "6.1.99-node7"


def crio_archive(criu: str, pid: int, folder: Path) -> Path:
    """A CRI-O style archive of the tree rooted at ``pid`` (left running), made with tar."""
    images = folder / "checkpoint"
    images.mkdir(parents=True)
    run([criu, "dump", "-t", str(pid), "-D", str(images), "-o", "dump.log", "-v4",
         "--leave-running"])
    # CRI-O and Podman keep CRIU's log and statistics beside the images' folder.
    (images / "stats-dump").rename(folder / "stats-dump")
    log = (images / "dump.log").read_bytes()
    log, found = re.subn(rb"Running on \S+ Linux \S+", f"Running on {NODE} Linux {KERNEL}".encode(),
                         log, count=1)
    assert found == 1, log[:400]
    (folder / "dump.log").write_bytes(log)
    (images / "dump.log").unlink()
    (folder / "config.dump").write_text(json.dumps(CONFIG))
    (folder / "spec.dump").write_text(json.dumps(SPEC))
    archive = folder.parent / "piggie.tar"
    run(["tar", "-C", str(folder), "-cf", str(archive), "."])
    return archive


def test_a_crio_archive_of_a_zombie_tree_is_read_from_the_archive(
    procs: ProcessTracker, tmp_path: Path, criu_path: str
) -> None:
    tree = procs.zombie_tree(tmp_path / "z")
    archive = crio_archive(criu_path, tree.proc.pid, tmp_path / "dir")
    with tarfile.open(archive) as tar:
        names = tar.getnames()
    assert names[0] == "." and "./checkpoint/pstree.img" in names  # `./` members
    host = Host(tmp_path / "cs", "importer")

    made = host.json("import", "farm.piggies.piggie", "cp1", str(archive))

    assert made["engine"] == "crio" and made["host"] == NODE
    assert made["labels"]["source"] == "cri-o" and made["labels"]["namespace"] == "farm"
    assert made["labels"]["checkpointed"] == "2026-03-04T05:16:17Z"
    shown = host.json("inspect", "farm.piggies.piggie", "cp1")
    assert shown["host"] == NODE and shown["kernel"] == KERNEL
    assert shown["host"] not in (socket.gethostname(), "importer")
    engine = shown["stats"]["engine"]
    assert engine["frozen_time_us"] > 0 and engine["pages_written"] > 0
    assert engine["runtime"] == "runc" and engine["criu_version"]
    text = host.cli("inspect", "farm.piggies.piggie", "cp1").stdout
    assert "frozen_time_us" in text and KERNEL in text
    assert [c["name"] for c in host.json("ls", "--host", NODE)] == ["cp1"]

    data = host.json("inspect", "farm.piggies.piggie", "cp1", "--tree")
    states = {p["pid"]: p["state"] for p in data["tree"]}
    assert states == {tree.proc.pid: "Alive", tree.zombie: "Dead", tree.stopped: "Stopped"}

    out = tmp_path / "out.tar"
    host.cli("export", "farm.piggies.piggie", "cp1", "-o", str(out), "--compress", "none")
    assert out.read_bytes() == archive.read_bytes()

    refused = host.cli("restore", "farm.piggies.piggie", "cp1", check=False)
    assert refused.returncode == 2, refused.stderr
    assert "imported CRI-O checkpoint archive: CRI-O restores it" in refused.stderr
    assert "Traceback" not in refused.stderr
