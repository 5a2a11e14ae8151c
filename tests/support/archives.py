"""Checkpoint archives built in memory, as the kubelet (CRI-O) writes them, for
``import`` tests: :func:`checkpoint_archive` (its memory image given), :func:`tar_bytes`
and :func:`entry` for hand-made (hostile) tars, :func:`noise` for incompressible,
reproducible bytes; :data:`SPEC` and :data:`CONFIG` are the archive's ``spec.dump`` and
default ``config.dump``."""

from __future__ import annotations

import hashlib
import io
import json
import tarfile

SPEC = {
    "ociVersion": "1.0.2",
    "annotations": {
        "io.container.manager": "cri-o",
        "io.kubernetes.pod.name": "counters",
        "io.kubernetes.pod.namespace": "shop",
        "io.kubernetes.container.name": "counter",
    },
}
CONFIG = {
    "id": "f11d11844af0",
    "name": "k8s_counter_counters_shop_0",
    "rootfsImageName": "quay.io/example/counter:1",
    "createdTime": "2026-01-02T03:04:05.123456789Z",
    "checkpointedTime": "2026-01-02T03:14:15.926535897Z",
}

def tar_bytes(members: list[tuple[tarfile.TarInfo, bytes]]) -> bytes:
    """A tar of ``members`` (as Go's archive/tar writes: no record padding)."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for info, data in members:
            tar.addfile(info, io.BytesIO(data) if info.isreg() else None)
    return buf.getvalue()


def entry(name: str, data: bytes = b"", kind: bytes = tarfile.REGTYPE, **kw: object) -> tuple[
    tarfile.TarInfo, bytes
]:
    info = tarfile.TarInfo(name)
    info.type, info.size, info.mtime, info.mode = kind, len(data), 1767323655, 0o644
    for key, value in kw.items():
        setattr(info, key, value)
    return info, data


def checkpoint_archive(pages: bytes, config: dict[str, object] | None = None) -> bytes:
    """A CRI-O-like checkpoint archive whose memory image is ``pages``."""
    return tar_bytes([
        entry("config.dump", json.dumps(config or CONFIG).encode()),
        entry("spec.dump", json.dumps(SPEC).encode()),
        entry("checkpoint/", kind=tarfile.DIRTYPE),
        entry("checkpoint/inventory.img", b"\x01" * 86),
        entry("checkpoint/pages-1.img", pages),
        entry("rootfs-diff.tar", tar_bytes([entry("etc/motd", b"hello\n")])),
        entry("deleted.files", b"[]"),
        entry("empty.log"),
    ])


def noise(size: int, seed: int) -> bytes:
    """Incompressible, reproducible bytes."""
    out, block = bytearray(), hashlib.sha256(str(seed).encode()).digest()
    while len(out) < size:
        block = hashlib.sha256(block).digest()
        out += block
    return bytes(out[:size])
