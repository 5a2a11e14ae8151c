"""Packing against a kept image (``transfer/baseline.py``): the same entries as a full
pack, chunks proven unchanged are not hashed again, plain and encrypted stores; the
baseline's folder is private and removed when closed."""

from __future__ import annotations

import logging
import os
import random
import shutil
import stat
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path

import pytest

from cryostash.store import Store
from cryostash.store.manifest import Manifest
from cryostash.store.sealing import PLAIN, KeyedSealing
from cryostash.store.writeonly import WriterSealing
from cryostash.transfer import wholehash
from cryostash.transfer.baseline import Baseline
from cryostash.transfer.chunking import ChunkParams
from cryostash.transfer.pack import PackResult, pack
from cryostash.transfer.unpack import unpack
from cryostash.transfer.wholehash import WholeHash
from tests.support.storage_helpers import FakeCatalog

PARAMS = ChunkParams(1 << 14)  # 16 KiB average: many chunks from a few MiB
PASS = b"baseline passphrase"


def make_store(root: Path, encrypted: bool) -> Store:
    if not encrypted:
        return Store(str(root))
    Store(str(root)).keyring.init(passphrase=PASS, host="h")
    return Store(str(root), passphrase=lambda: PASS)


def write_image(root: Path, seed: int = 0) -> Path:
    """An image-like folder: a page file (random, zeros, random), small files."""
    rnd = random.Random(seed)
    root.mkdir(parents=True)
    pages = rnd.randbytes(1 << 20) + bytes(1 << 20) + rnd.randbytes(1 << 19)
    (root / "pages-1.img").write_bytes(pages)
    (root / "core-1.img").write_bytes(b"core" * 100)
    (root / "empty.img").write_bytes(b"")
    (root / "sub").mkdir()
    (root / "sub" / "mm.img").write_bytes(rnd.randbytes(5000))
    return root


def changed_copy(kept: Path, dest: Path) -> Path:
    """The kept image, changed as a process changes between two dumps: a few pages
    rewritten, a page inserted (later pages move), a file grown, a file added."""
    shutil.copytree(kept, dest)
    pages = bytearray((dest / "pages-1.img").read_bytes())
    pages[300_000:300_100] = bytes(range(100))
    pages[1_500_000:1_500_004] = b"\xff\xfe\xfd\xfc"  # in the zeros
    pages[700_000:700_000] = random.Random(5).randbytes(4096)
    (dest / "pages-1.img").write_bytes(bytes(pages))
    with open(dest / "sub" / "mm.img", "ab") as fh:
        fh.write(b"more")
    (dest / "new.img").write_bytes(b"new" * 1000)
    return dest


def first_pack(tmp_path: Path, store: Store) -> tuple[Baseline, PackResult]:
    image = write_image(tmp_path / "create-1")
    packed = pack(store, image, reserve=FakeCatalog().reserve, params=PARAMS, record_states=True)
    baseline = Baseline(tmp_path / "scratch", "t-n")
    baseline.keep(image, packed, store)
    assert baseline.image is not None and not list(image.iterdir())  # moved, not copied
    return baseline, packed


@pytest.mark.parametrize("encrypted", [False, True], ids=["plain", "encrypted"])
def test_a_pack_against_the_kept_image_is_the_full_pack(tmp_path: Path, encrypted: bool) -> None:
    store = make_store(tmp_path / "store", encrypted)
    baseline, _ = first_pack(tmp_path, store)
    assert baseline.image is not None
    image = changed_copy(baseline.image.folder, tmp_path / "create-2")
    catalog = FakeCatalog()
    full = pack(store, image, reserve=catalog.reserve, params=PARAMS)
    reused = pack(store, image, reserve=catalog.reserve, params=PARAMS, baseline=baseline.image)
    assert reused.entries == full.entries  # offsets, lengths, names, whole-file digests
    s, f = reused.stats, full.stats
    assert f.chunks_reused == f.bytes_compared == 0
    assert f.bytes_scanned - (1 << 20) <= f.bytes_hashed < f.bytes_scanned  # not the zeros
    assert s.chunks_reused > 0.8 * s.chunks_total
    assert s.bytes_hashed < 0.2 * f.bytes_hashed
    assert s.bytes_compared >= s.bytes_scanned - s.bytes_hashed - (1 << 20)
    assert (s.chunks_zero, s.bytes_scanned) == (f.chunks_zero, f.bytes_scanned)
    baseline.close()


def test_unchanged_files_take_the_kept_digest(tmp_path: Path) -> None:
    store = make_store(tmp_path / "store", False)
    baseline, packed = first_pack(tmp_path, store)
    assert baseline.image is not None
    image = tmp_path / "create-2"
    shutil.copytree(baseline.image.folder, image)
    again = pack(store, image, reserve=FakeCatalog().reserve, params=PARAMS,
                 baseline=baseline.image)
    assert [replace(e, mode=0) for e in again.entries] == [  # the kept copies are 0600
        replace(e, mode=0) for e in packed.entries
    ]
    assert again.stats.bytes_hashed == 0
    assert again.stats.chunks_reused == again.stats.chunks_total
    baseline.close()


def test_a_kept_image_serves_only_its_store_and_chunk_size(tmp_path: Path) -> None:
    store = make_store(tmp_path / "store", False)
    baseline, _ = first_pack(tmp_path, store)
    assert baseline.image is not None
    image = tmp_path / "create-2"
    shutil.copytree(baseline.image.folder, image)
    others = [
        (make_store(tmp_path / "other", False), PARAMS),
        (make_store(tmp_path / "keyed", True), PARAMS),
        (store, ChunkParams(1 << 15)),
    ]
    for other, params in others:
        done = pack(other, image, reserve=FakeCatalog().reserve, params=params,
                    baseline=baseline.image)
        assert done.stats.chunks_reused == 0 and done.stats.bytes_compared == 0
        assert done.entries == pack(other, image, params=params).entries
    baseline.close()


def test_the_kept_image_is_private_replaced_and_removed_on_close(tmp_path: Path) -> None:
    store = make_store(tmp_path / "store", False)
    baseline, _ = first_pack(tmp_path, store)
    assert baseline.image is not None
    first = baseline.image.folder
    folder = first.parent
    assert folder.parent == tmp_path / "scratch"
    assert folder.name.startswith("create-t-n-baseline-")
    assert stat.S_IMODE(folder.stat().st_mode) == 0o700
    modes = {p.name: stat.S_IMODE(p.stat().st_mode) for p in first.rglob("*") if p.is_file()}
    assert set(modes) == {"pages-1.img", "core-1.img", "empty.img", "mm.img"}
    assert set(modes.values()) == {0o600}

    image = write_image(tmp_path / "create-2", seed=1)
    packed = pack(store, image, params=PARAMS)
    baseline.keep(image, packed, store)
    assert baseline.image is not None and baseline.image.folder != first
    assert not first.exists()  # the image it replaced is gone
    baseline.close()
    baseline.close()  # idempotent
    assert baseline.image is None and list((tmp_path / "scratch").iterdir()) == []


def test_making_room_for_the_next_dump_leaves_nothing(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    store = make_store(tmp_path / "store", False)
    empty = Baseline(tmp_path / "scratch", "none")
    empty.make_room()  # nothing kept: nothing to do
    assert not (tmp_path / "scratch").exists()
    baseline, _ = first_pack(tmp_path, store)
    assert baseline.image is not None
    folder = baseline.image.folder.parent
    baseline.make_room()
    assert [p.name for p in folder.iterdir()] == [baseline.image.folder.name]
    (folder / "room.tmp").mkdir()  # the file cannot be written
    with caplog.at_level(logging.WARNING):
        baseline.make_room()  # never raises
    assert "could not make room" in caplog.text
    baseline.close()
    assert list((tmp_path / "scratch").iterdir()) == []


def test_an_image_that_cannot_be_kept_leaves_the_baseline_empty(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    store = make_store(tmp_path / "store", False)
    baseline, packed = first_pack(tmp_path, store)
    with caplog.at_level(logging.WARNING):
        baseline.keep(tmp_path / "no-such-folder", packed, store)  # never raises
    assert baseline.image is None and "is not kept" in caplog.text
    folders = list((tmp_path / "scratch").iterdir())
    assert len(folders) == 1 and list(folders[0].iterdir()) == []  # the old image went
    with Baseline(tmp_path / "scratch", "unused") as unused:
        assert unused.image is None
    baseline.close()
    assert list((tmp_path / "scratch").iterdir()) == []
    assert not os.listdir(tmp_path / "create-1")


SEALINGS = {
    "plain": lambda: PLAIN,
    "keyed": lambda: KeyedSealing(bytes(range(32)), "store-id"),
    "writer": lambda: WriterSealing(bytes(range(64)), "store-id"),
}


@pytest.mark.parametrize("kind", list(SEALINGS))
def test_the_whole_file_digest_resumes_from_a_kept_state(
    kind: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(wholehash, "STEP", 1 << 16)
    sealing = SEALINGS[kind]()
    old = random.Random(1).randbytes(1_000_000)
    first = WholeHash(sealing, memoryview(old), record=True)
    first.start()
    assert first.result() == sealing.chunk_name(old) and first.hashed == len(old)
    assert [offset for offset, _ in first.states] == list(range(1 << 16, len(old), 1 << 16))
    for at, new in [
        (900_000, old[:900_000] + b"changed" + old[900_007:]),  # a change near the end
        (500_000, old[:500_000] + b"inserted" + old[500_000:]),  # a longer file
        (700_000, old[:700_000]),  # a prefix
        (0, b"x" + old[1:]),
    ]:
        again = WholeHash(sealing, memoryview(new), first.states, record=True)
        again.start(at)
        assert again.result() == sealing.chunk_name(new)
        assert again.hashed == len(new) - at // (1 << 16) * (1 << 16)
        assert [o for o, _ in again.states] == list(range(1 << 16, len(new), 1 << 16))
    assert first.result() == sealing.chunk_name(old)  # its states were copied, not used


def test_a_file_changed_near_its_end_is_hashed_whole_from_there_only(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(wholehash, "STEP", 1 << 16)
    store = make_store(tmp_path / "store", False)
    baseline, packed = first_pack(tmp_path, store)
    assert baseline.image is not None and set(packed.states) == {"pages-1.img", "sub/mm.img"}
    image = tmp_path / "create-2"
    shutil.copytree(baseline.image.folder, image)
    with open(image / "pages-1.img", "r+b") as fh:
        fh.seek(-10_000, os.SEEK_END)
        fh.write(b"late change")
    full = pack(store, image, params=PARAMS)
    again = pack(store, image, params=PARAMS, baseline=baseline.image, record_states=True)
    assert again.entries == full.entries
    assert full.stats.bytes_hashed_whole == full.stats.bytes_scanned - 400  # but core-1.img
    assert again.stats.bytes_hashed_whole < 2 * (1 << 16)  # from the state before the change
    assert set(again.states) == {"pages-1.img", "sub/mm.img"}
    assert again.states["sub/mm.img"] == packed.states["sub/mm.img"]  # the same file
    baseline.close()


def test_a_writer_host_packs_against_its_kept_image_and_the_restore_host_reads_it(
    tmp_path: Path,
) -> None:
    """A write-only store's writer seals a manifest with the key of every chunk it
    names: it learned those of the reused chunks when it named them for the kept image."""
    root = str(tmp_path / "store")
    Store(root).keyring.init(passphrase=b"restore", host="h", writers=True)
    restore = Store(root, passphrase=lambda: b"restore")
    restore.unlock(restore=True)
    keys = restore.keys
    assert keys.config is not None and keys.unlocked is not None
    restore.keyring.add_key(keys.config, keys.unlocked, b"writer", "w", writer=True)
    writer = Store(root, passphrase=lambda: b"writer")
    assert type(writer.sealing) is WriterSealing
    baseline, _ = first_pack(tmp_path, writer)
    assert baseline.image is not None
    image = changed_copy(baseline.image.folder, tmp_path / "create-2")
    packed = pack(writer, image, params=PARAMS, baseline=baseline.image)
    assert packed.stats.chunks_reused > 0
    data = Manifest("web", "mv", "criu", "4.0", "h", "6.1", datetime.now(UTC),
                    files=packed.entries).to_bytes()
    writer.manifests.write("web", "mv", data)
    loaded = restore.manifests.load("web", "mv")
    unpack(restore, loaded.manifest.files, tmp_path / "restored", jobs=2)
    for entry in packed.entries:
        assert (tmp_path / "restored" / entry.path).read_bytes() == (
            image / entry.path
        ).read_bytes()
    baseline.close()
