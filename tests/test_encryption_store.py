"""Encrypted stores at the Store level, on every backend (memory, local, S3/moto): keyed
names, deduplication, authenticated objects, the refusal of plain writes, key objects."""

from __future__ import annotations

import os

import blake3
import pytest

from cryostash.errors import IntegrityError, KeyRequired, UsageError, WrongKey
from cryostash.store import Store, codec
from cryostash.store.store_config import CONFIG
from tests.support.stores import Backend

PASS = b"store passphrase"


def _encrypted(backend: Backend, passphrase: bytes | None = PASS) -> Store:
    Store.over(backend.open()).keyring.init(passphrase=PASS, host="h")
    return Store.over(backend.open(), passphrase=lambda: passphrase)


def _put(store: Store, plain: bytes) -> str:
    digest = store.sealing.chunk_name(plain)
    batch = store.chunks.batch()
    batch.add(digest, store.chunks.encode(digest, plain, 3))
    batch.commit()
    return digest


def test_names_are_keyed_dedup_holds_and_reads_verify(backend: Backend) -> None:
    store = _encrypted(backend)
    plain = os.urandom(3000) + bytes(5000)
    digest = _put(store, plain)
    assert digest != blake3.blake3(plain).hexdigest()  # the store cannot confirm a guess
    assert store.sealing.zero_name(4096) != blake3.blake3(bytes(4096)).hexdigest()
    assert _put(store, plain) == digest  # same content, same name: stored once
    assert [k for k in backend.raw.files() if k.startswith("blobs/")] == [
        f"blobs/{digest[:2]}/{digest}"
    ]
    assert store.chunks.read(digest, len(plain)) == plain
    other = Store.over(backend.open(), passphrase=lambda: PASS)  # another client, same key
    assert other.sealing.chunk_name(plain) == digest
    assert other.chunks.read(digest) == plain
    plain_store = Store.over(backend.open())
    with pytest.raises(KeyRequired, match="is encrypted"):
        plain_store.chunks.read(digest)


def test_objects_are_bound_to_their_names(backend: Backend) -> None:
    store = _encrypted(backend)
    a, b = os.urandom(2000), os.urandom(2000)
    da, db = _put(store, a), _put(store, b)
    raw = backend.raw
    raw.put(raw.blob(da), raw.get(raw.blob(db)))  # renamed over another
    with pytest.raises(IntegrityError, match="does not authenticate"):
        store.chunks.read(da)
    store.manifests.write("t1", "n1", b'{"x": 1}\n')
    store.manifests.write("t1", "n2", b'{"x": 2}\n')
    raw.put(raw.manifest("t1", "n1"), raw.get(raw.manifest("t1", "n2")))  # copied
    with pytest.raises(IntegrityError, match="does not authenticate"):
        store.manifests.read("t1", "n1")
    raw.flip_byte(raw.manifest("t1", "n2"), 20)
    with pytest.raises(IntegrityError, match="does not authenticate"):
        store.manifests.read("t1", "n2")


def test_plain_objects_are_refused_both_ways(backend: Backend) -> None:
    store = _encrypted(backend)
    plain = os.urandom(1000)
    digest = store.sealing.chunk_name(plain)
    batch = store.chunks.batch()
    with pytest.raises(IntegrityError, match="in the clear"):
        batch.add(digest, codec.encode(plain, 3))  # a caller that did not seal
    batch.discard()
    assert not store.chunks.has(digest)
    raw = backend.raw
    raw.put(raw.manifest("t1", "planted"), b'{"format_version": 2}\n')
    with pytest.raises(IntegrityError, match="not encrypted"):
        store.manifests.read("t1", "planted")


def test_keys_wrong_added_removed_and_never_shown(backend: Backend) -> None:
    _encrypted(backend)
    with pytest.raises(WrongKey) as err:
        Store.over(backend.open(), passphrase=lambda: b"guess").unlock()
    assert "guess" not in str(err.value)
    store = Store.over(backend.open(), passphrase=lambda: PASS)
    store.unlock()
    unlocked = store.keys.unlocked
    assert unlocked is not None and "master" not in repr(unlocked).split("key_id")[1]
    assert PASS.hex() not in repr(unlocked) and repr(unlocked.master) not in repr(unlocked)
    assert store.keys.config is not None
    new_id = store.keyring.add_key(store.keys.config, unlocked, b"second", "h")
    second = Store.over(backend.open(), passphrase=lambda: b"second")
    assert second.unlock() and second.keys.unlocked is not None
    assert second.keys.unlocked.key_id == new_id
    with pytest.raises(UsageError, match="in use"):
        second.keyring.remove_key(new_id, second.keys.unlocked)
    second.keyring.remove_key(unlocked.key_id, second.keys.unlocked)
    with pytest.raises(WrongKey):
        Store.over(backend.open(), passphrase=lambda: PASS).unlock()
    assert len(second.keyring.list_keys()) == 1
    raw = b"".join(backend.raw.get(r) for r in backend.raw.files())
    assert PASS not in raw and b"second" not in raw and unlocked.master not in raw
    with pytest.raises(UsageError, match="initialised already"):
        second.keyring.init(passphrase=None, host="h")


def test_encryption_only_on_an_empty_store_and_plain_stores_unchanged(backend: Backend) -> None:
    store = Store.over(backend.open())
    plain = os.urandom(1000)
    digest = _put(store, plain)
    assert digest == blake3.blake3(plain).hexdigest()  # plain store: as before
    assert not backend.raw.exists(CONFIG)
    with pytest.raises(UsageError, match="empty store"):
        store.keyring.init(passphrase=PASS, host="h")
    assert not backend.raw.exists(CONFIG) and backend.raw.files() == [
        f"blobs/{digest[:2]}/{digest}"
    ]
