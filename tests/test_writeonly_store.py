"""Write-only hosts at the Store level, on every backend (memory, local, S3/moto): a writer
key names, seals and deduplicates, but opens nothing; a restore key opens what writers
made; manifests are bound to their names and cannot be forged without the writer secret."""

from __future__ import annotations

import os
from datetime import UTC, datetime

import blake3
import pytest

from cryostash.errors import IntegrityError, RestoreKeyRequired, UsageError, WrongKey
from cryostash.store import Store
from cryostash.store.keys import Keyring
from cryostash.store.manifest import Manifest
from cryostash.store.writeonly import RestoreSealing, WriterSealing, writer_secret
from cryostash.types import FileEntry
from tests.support.stores import Backend

RESTORE = b"restore passphrase"
WRITER = b"writer passphrase"


def _setup(backend: Backend) -> tuple[Store, Store]:
    """A write-only-keys store: (restore host, writer host)."""
    Store.over(backend.open()).keyring.init(passphrase=RESTORE, host="h", writers=True)
    restore = Store.over(backend.open(), passphrase=lambda: RESTORE)
    restore.unlock(restore=True)
    keyring, keys = restore.keyring, restore.keys
    assert keys.config is not None and keys.unlocked is not None
    keyring.add_key(keys.config, keys.unlocked, WRITER, "w", writer=True)
    return restore, Store.over(backend.open(), passphrase=lambda: WRITER)


def _checkpoint(store: Store, target: str, name: str, chunks: list[bytes]) -> bytes:
    """Store ``chunks`` (deduplicated) and a manifest naming them; the manifest bytes."""
    names = [store.sealing.chunk_name(c) for c in chunks]
    batch = store.chunks.batch()
    for digest, plain in zip(names, chunks, strict=True):
        batch.add(digest, store.chunks.encode(digest, plain, 3))
    batch.commit()
    whole = store.sealing.chunk_name(b"".join(chunks))
    entry = FileEntry("pages-1.img", 0o600, sum(map(len, chunks)), tuple(names), whole,
                      tuple(len(c) for c in chunks))
    data = Manifest(target, name, "criu", "4.0", "h", "6.1", datetime.now(UTC),
                    files=(entry,)).to_bytes()
    store.manifests.write(target, name, data)
    return data


def test_writer_adds_and_deduplicates_restore_host_reads(backend: Backend) -> None:
    restore, writer = _setup(backend)
    assert type(writer.sealing) is WriterSealing and type(restore.sealing) is RestoreSealing
    shared, own = os.urandom(5000), os.urandom(3000)
    data = _checkpoint(writer, "web", "one", [shared, own])
    blobs = [k for k in backend.raw.files() if k.startswith("blobs/")]
    assert len(blobs) == 2
    name = writer.sealing.chunk_name(shared)
    assert name != blake3.blake3(shared).hexdigest()
    # Another writer host (its own process) names the same content the same: dedup.
    other = Store.over(backend.open(), passphrase=lambda: WRITER)
    assert other.sealing.chunk_name(shared) == name and other.chunks.has(name)
    _checkpoint(other, "web", "two", [shared, os.urandom(100)])
    assert len([k for k in backend.raw.files() if k.startswith("blobs/")]) == 3
    # Neither writer reads: not its own manifest, not another's, no chunk.
    for store in (writer, other):
        for n in ("one", "two"):
            with pytest.raises(RestoreKeyRequired, match="writer key"):
                store.manifests.read("web", n)
        with pytest.raises(RestoreKeyRequired):
            store.chunks.read(name)
        with pytest.raises(RestoreKeyRequired, match="writer key"):
            store.unlock(restore=True)
    # A fresh restore host opens the manifest (learning the chunk keys), then the chunks.
    reader = Store.over(backend.open(), passphrase=lambda: RESTORE)
    with pytest.raises(IntegrityError, match="key is not known"):
        reader.chunks.read(name)  # no manifest opened yet: its key is nowhere else
    loaded = reader.manifests.load("web", "one", writer.sealing.manifest_digest(data))
    assert reader.manifests.read("web", "one") == data
    first, second = loaded.manifest.files[0].blobs
    assert reader.chunks.read(first, len(shared)) == shared
    assert reader.chunks.read(second, len(own)) == own
    # A restore host writes too, into the same names (dedup with the writers).
    assert reader.sealing.chunk_name(shared) == name


def test_writeonly_manifests_are_bound_and_unforgeable(backend: Backend) -> None:
    restore, writer = _setup(backend)
    _checkpoint(writer, "web", "one", [os.urandom(2000)])
    _checkpoint(writer, "web", "two", [os.urandom(2000)])
    raw = backend.raw
    one, two = raw.manifest("web", "one"), raw.manifest("web", "two")
    saved = raw.get(one)
    raw.put(one, raw.get(two))  # copied from another checkpoint
    with pytest.raises(IntegrityError, match="does not authenticate"):
        restore.manifests.read("web", "one")
    raw.flip_byte(one, 40)
    with pytest.raises(IntegrityError, match="does not authenticate"):
        restore.manifests.read("web", "one")
    # Someone with the public key but not the writer secret: a box sealed with another
    # authentication key (the HKDF salt comes from the writer secret) does not open; the
    # same box made with the writer secret does (the control).
    keys = restore.keys
    assert keys.config is not None and keys.unlocked is not None
    empty = Manifest("web", "one", "criu", "4.0", "h", "6.1", datetime.now(UTC)).to_bytes()
    genuine = writer_secret(keys.unlocked.master)
    forger = WriterSealing(os.urandom(32) + genuine[32:], keys.config.id)
    raw.put(one, bytes(forger.seal(one, (empty,))[0]))
    with pytest.raises(IntegrityError, match="does not authenticate"):
        restore.manifests.read("web", "one")
    raw.put(one, bytes(WriterSealing(genuine, keys.config.id).seal(one, (empty,))[0]))
    assert restore.manifests.read("web", "one") == empty
    raw.put(one, saved)
    assert restore.manifests.load("web", "one").manifest.name == "one"


def test_writer_keys_cannot_manage_keys_and_need_a_writeonly_store(backend: Backend) -> None:
    restore, writer = _setup(backend)
    writer.unlock()
    wkeys, rkeys = writer.keys, restore.keys
    assert wkeys.unlocked is not None and wkeys.config is not None
    assert wkeys.unlocked.writer and wkeys.unlocked.master == b""
    with pytest.raises(RestoreKeyRequired):
        writer.keyring.add_key(wkeys.config, wkeys.unlocked, b"x", "w")
    with pytest.raises(RestoreKeyRequired):
        writer.keyring.remove_key("anything", wkeys.unlocked)
    kinds = sorted(k.kind for k in Keyring(restore.backend, restore.url).list_keys())
    assert kinds == ["restore", "writer"]
    with pytest.raises(WrongKey):
        Store.over(backend.open(), passphrase=lambda: b"neither").unlock()
    # A writer key object whose kind is flipped to a restore key does not open.
    raw = backend.raw
    for rel in [r for r in raw.files() if r.startswith("keys/")]:
        raw.put(rel, raw.get(rel).replace(b'"kind": "writer",', b""))
    with pytest.raises(WrongKey):
        Store.over(backend.open(), passphrase=lambda: WRITER).unlock()
    assert rkeys.unlocked is not None


def test_plain_encrypted_store_refuses_writer_keys(backend: Backend) -> None:
    Store.over(backend.open()).keyring.init(passphrase=RESTORE, host="h")
    store = Store.over(backend.open(), passphrase=lambda: RESTORE)
    store.unlock(restore=True)
    keys = store.keys
    assert keys.config is not None and keys.unlocked is not None
    with pytest.raises(UsageError, match="write-only keys"):
        store.keyring.add_key(keys.config, keys.unlocked, WRITER, "w", writer=True)
    with pytest.raises(UsageError, match="--encrypt"):
        Store.over(backend.open()).keyring.init(passphrase=None, host="h", writers=True)
