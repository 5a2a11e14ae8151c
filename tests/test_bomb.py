"""Decompression bombs: a chunk or a manifest that announces gigabytes is refused as
corrupt before anything is allocated for it, and the restoring process's peak memory
(its ``VmHWM``, measured in a separate process) stays well below what was announced.

The bomb is a real zstd frame: 32768 RLE blocks that decompress to 4 GiB of zeros
(about 128 KiB stored), the frame header announcing those 4 GiB.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import blake3
import pytest
import zstandard

from cryostash.errors import IntegrityError
from cryostash.store import Manifest
from cryostash.store.codec import MAX_PLAIN, TAG_ZSTD, verified
from cryostash.transfer.chunking import MAX_CHUNK
from tests.support.fake_engine import FakeManager, make_image
from tests.support.setups import Setup, make_setup

PEAK = Path(__file__).resolve().parent / "support" / "peak_prog.py"
GIB4 = 4 << 30
#: Most the restoring process may grow while refusing a bomb.
LIMIT_KIB = 64 << 10


def rle_bomb(size: int = GIB4) -> bytes:
    """A valid zstd frame of ``size`` zero bytes made of RLE blocks, its header
    announcing ``size``: a few bytes per 128 KiB."""
    block = 128 << 10
    out = bytearray((0xFD2FB528).to_bytes(4, "little"))
    out.append(0xE0)  # 8-byte frame content size, single segment, no checksum
    out += size.to_bytes(8, "little")
    left = size
    while left:
        n = min(block, left)
        left -= n
        out += (int(left == 0) | (1 << 1) | (n << 3)).to_bytes(3, "little") + b"\0"
    return bytes(out)


def test_the_crafted_frame_is_a_real_bomb() -> None:
    small = rle_bomb(1 << 20)
    assert zstandard.frame_content_size(small) == 1 << 20
    assert zstandard.ZstdDecompressor().decompress(small) == bytes(1 << 20)
    assert zstandard.frame_content_size(rle_bomb()) == GIB4 and len(rle_bomb()) < 200_000


def test_decoding_is_bounded_by_the_chunker_maximum_whatever_the_manifest_says() -> None:
    assert MAX_PLAIN == MAX_CHUNK
    bomb = bytes([TAG_ZSTD]) + rle_bomb()
    digest = blake3.blake3(b"x").hexdigest()
    with pytest.raises(IntegrityError, match=r"manifest gives it 4294967296 bytes"):
        verified(bomb, digest, GIB4)
    with pytest.raises(IntegrityError, match=r"announces 4294967296 bytes \(limit 1000\)"):
        verified(bomb, digest, 1000)
    with pytest.raises(IntegrityError, match=r"announces 4294967296 bytes"):
        verified(bomb, digest)


def test_a_manifest_with_an_impossible_chunk_size_is_corrupt(tmp_path: Path) -> None:
    setup = make_setup("local-sqlite", tmp_path)
    make_image(tmp_path / "image")
    with setup.manager(FakeManager) as mgr:
        mgr.create("app", "cp", locator=str(tmp_path / "image"))
        manifest = mgr.repository.store().manifests.load("app", "cp").manifest
    data = manifest.to_dict()
    data["files"][0]["chunks"] = [[blake3.blake3(b"x").hexdigest(), MAX_PLAIN + 1]]
    data["files"][0]["size"] = MAX_PLAIN + 1
    with pytest.raises(IntegrityError, match=r"larger than any chunk cryostash makes"):
        Manifest.from_bytes(json.dumps(data).encode())


def _restore_peak(setup: Setup, tmp_path: Path) -> dict[str, object]:
    done = subprocess.run(
        [sys.executable, str(PEAK), setup.store_url, setup.catalog_url, str(setup.scratch),
         "app", "cp", str(tmp_path / "out")],
        capture_output=True, text=True, timeout=120, check=True,
    )  # fmt: skip
    result: dict[str, object] = json.loads(done.stdout.splitlines()[-1])
    return result


def _plant(setup: Setup, tmp_path: Path, announced: int) -> None:
    """Checkpoint ``app/cp`` whose ``pages.img`` is one chunk: the 4 GiB bomb, the
    manifest giving it ``announced`` bytes; manifest and catalog digest agree (as when
    a host with write access to both made it)."""
    from sqlalchemy import update
    from sqlalchemy.orm import Session

    from cryostash.catalog.database import create_catalog_engine
    from cryostash.catalog.models import CheckpointRow

    make_image(tmp_path / "image")
    with setup.manager(FakeManager) as mgr:
        mgr.create("app", "cp", locator=str(tmp_path / "image"))
        manifest = mgr.repository.store().manifests.load("app", "cp").manifest
    digest = blake3.blake3(b"bomb").hexdigest()
    setup.raw.put(setup.raw.blob(digest), bytes([TAG_ZSTD]) + rle_bomb())
    data = manifest.to_dict()
    for entry in data["files"]:
        if entry["path"] == "pages.img":
            entry["chunks"], entry["size"] = [[digest, announced]], announced
    text = (json.dumps(data, sort_keys=True, separators=(",", ":")) + "\n").encode()
    setup.raw.remove(setup.raw.manifest("app", "cp"))
    setup.raw.put(setup.raw.manifest("app", "cp"), text)
    engine = create_catalog_engine(setup.catalog_url)
    try:
        with Session(engine) as session, session.begin():
            session.execute(
                update(CheckpointRow).values(manifest_digest=blake3.blake3(text).hexdigest())
            )
    finally:
        engine.dispose()


@pytest.mark.parametrize(
    ("announced", "reason"),
    [
        (GIB4, r"larger than any chunk cryostash makes"),
        (1 << 20, r"zstd frame announces 4294967296 bytes \(limit 1048576\)"),
    ],
    ids=["manifest-says-4GiB", "manifest-says-1MiB"],
)
def test_restoring_a_bomb_is_refused_within_64_mib(
    tmp_path: Path, announced: int, reason: str
) -> None:
    setup = make_setup("local-sqlite", tmp_path)
    _plant(setup, tmp_path, announced)
    result = _restore_peak(setup, tmp_path)
    assert result["error"] == "IntegrityError", result
    assert re.search(reason, str(result["message"])), result
    grown = int(str(result["peak_kib"])) - int(str(result["baseline_kib"]))
    print(f"peak memory above baseline: {grown} KiB")
    assert grown < LIMIT_KIB, result
    assert not (tmp_path / "out").exists()
