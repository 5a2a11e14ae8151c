"""Stores with write-only hosts: writers add checkpoints and deduplicate, only restore
hosts read them (``store init --encrypt --write-only-keys``; see docs/security.md).

Keys. The store's 32-byte master key (wrapped by the *restore* passphrases, as in any
encrypted store) derives, with BLAKE3's key derivation, the **writer secret** (32 bytes)
and the X25519 **manifest private key**. A *writer key* (``key add --writer``) wraps only
the writer secret and the manifest *public* key: never the master or the private key.
The writer secret derives the chunk key, the manifest-digest key and the manifest
authentication key.

- **Chunk name and chunk encryption key**: one keyed BLAKE3 (chunk key) of the plain
  bytes, 64 bytes of output: the first 32 are the name (hex), the last 32 the chunk's
  AES-256-GCM key ``k_c`` (convergent: any writer derives the same name and key from the
  same content, so deduplication works across hosts; knowing a name does not give
  ``k_c``, which is a different part of the keyed output). The chunk object is sealed as
  in :mod:`~cryostash.store.sealing` (``0xE1 | nonce | ciphertext | tag``, associated
  data: store id and object key), under ``k_c``.
- **Manifest**: sealed to the public key (a sealed box): an ephemeral X25519 key pair,
  ``HKDF-SHA256(shared secret, salt = manifest authentication key, info = context |
  store id | ephemeral public | recipient public)`` gives an AES-256-GCM key; associated
  data: store id and object key. Stored as ``0xE2 | ephemeral public (32) | nonce (12) |
  ciphertext | tag (16)``. The plaintext is ``count (4, big-endian) | count x (name (32)
  | k_c (32)) | manifest``: the keys of exactly the chunks the manifest names. Opening
  needs the private key; forging needs the writer secret (the HKDF salt) too.
- **Manifest digest** (catalog): keyed BLAKE3 (digest key) of the plain manifest.

A sealing learns ``k_c`` when it names a chunk (:meth:`chunk_name`) and, on a restore
host, when it opens a manifest; it keeps them for its life (64 bytes a chunk). A writer's
sealing refuses to open anything (:class:`~cryostash.errors.RestoreKeyRequired`).
Thread-safe; keys never appear in a message or ``repr``.
"""

from __future__ import annotations

import os
import struct
import threading
from collections.abc import Sequence
from typing import Any

from cryostash.errors import IntegrityError, RestoreKeyRequired
from cryostash.objects.backend import Buffer
from cryostash.store import layout
from cryostash.store.sealing import NONCE_LEN, OVERHEAD, SEALED_TAG, Sealing, is_sealed

#: ``names`` of the configuration's ``encryption`` for such a store (older readers refuse it).
NAMES = "keyed-BLAKE3-convergent"
MANIFESTS = "X25519-HKDF-SHA256-AES-256-GCM"
BOX_TAG = 0xE2
_PUB = 32
_BOX_HEAD = 1 + _PUB + NONCE_LEN
_FROM_MASTER = {
    "writer": "cryostash 2025-07 writer secret",
    "private": "cryostash 2025-07 manifest private key",
}
_FROM_WRITER = {
    "chunk": "cryostash 2025-07 convergent chunk key",
    "digest": "cryostash 2025-07 write-only manifest digest key",
    "auth": "cryostash 2025-07 manifest authentication key",
}
_HKDF_INFO = b"cryostash 2025-07 manifest box\0"


def _derive(key: bytes, context: str) -> bytes:
    import blake3

    return bytes(blake3.blake3(key, derive_key_context=context).digest())


def _public(private: bytes) -> bytes:
    from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey

    return X25519PrivateKey.from_private_bytes(private).public_key().public_bytes_raw()


def writer_secret(master: bytes) -> bytes:
    """What a writer key wraps: writer secret (32) | manifest public key (32)."""
    private = _derive(master, _FROM_MASTER["private"])
    return _derive(master, _FROM_MASTER["writer"]) + _public(private)


def _is_manifest(key: str) -> bool:
    return key.startswith(layout.CHECKPOINTS + "/")


class WriterSealing(Sealing):
    """A writer host's sealing of a write-only store: names, seals, never opens.

    Args:
        secret: the 64 bytes a writer key wraps (:func:`writer_secret`).
        store_id: the store's id.
    """

    encrypted = True
    overhead = OVERHEAD
    can_read = False

    def __init__(self, secret: bytes, store_id: str) -> None:
        super().__init__()
        if len(secret) != 64:
            raise ValueError("a writer secret is 64 bytes")
        writer, self._recipient = secret[:32], secret[32:]
        self._chunk_key = _derive(writer, _FROM_WRITER["chunk"])
        self._digest_key = _derive(writer, _FROM_WRITER["digest"])
        self._auth_key = _derive(writer, _FROM_WRITER["auth"])
        self._store_id = store_id
        self._prefix = f"cryostash-object\0{store_id}\0".encode()
        self._keys: dict[str, bytes] = {}
        self._keys_lock = threading.Lock()

    def __repr__(self) -> str:
        return f"{type(self).__name__}(<key>)"

    def hasher(self) -> Any:
        import blake3

        return blake3.blake3(key=self._chunk_key)

    def name_from(self, hasher: Any) -> str:
        """The name (first half of a 64-byte output); the second half, the chunk's
        convergent key, is remembered for sealing it and the manifest naming it."""
        out: bytes = hasher.digest(length=64)
        name = out[:32].hex()
        with self._keys_lock:
            self._keys[name] = out[32:]
        return name

    def manifest_digest(self, data: bytes) -> str:
        import blake3

        return str(blake3.blake3(data, key=self._digest_key).hexdigest())

    def _ad(self, key: str) -> bytes:
        return self._prefix + key.encode()

    def _chunk_aead(self, key: str, what: str) -> Any:
        from cryptography.hazmat.primitives.ciphers.aead import AESGCM

        name = key.rsplit("/", 1)[-1]
        with self._keys_lock:
            k_c = self._keys.get(name)
        if k_c is None:
            raise IntegrityError(
                f"{what}: its key is not known here (no manifest opened names it)"
            )
        return AESGCM(k_c)

    def _box_key(self, shared: bytes, ephemeral: bytes) -> Any:
        from cryptography.hazmat.primitives import hashes
        from cryptography.hazmat.primitives.ciphers.aead import AESGCM
        from cryptography.hazmat.primitives.kdf.hkdf import HKDF

        info = _HKDF_INFO + self._store_id.encode() + b"\0" + ephemeral + self._recipient
        hkdf = HKDF(algorithm=hashes.SHA256(), length=32, salt=self._auth_key, info=info)
        return AESGCM(hkdf.derive(shared))

    def _seal_manifest(self, key: str, plain: bytes) -> bytes:
        from cryptography.hazmat.primitives.asymmetric.x25519 import (
            X25519PrivateKey,
            X25519PublicKey,
        )

        from cryostash.store.manifest import Manifest

        names = sorted(Manifest.from_bytes(plain).blob_digests)
        table = [struct.pack(">I", len(names))]
        with self._keys_lock:
            for name in names:
                k_c = self._keys.get(name)
                if k_c is None:
                    raise IntegrityError(f"blob {name} was not named by this host: no key")
                table.append(bytes.fromhex(name) + k_c)
        ephemeral = X25519PrivateKey.generate()
        eph_pub = ephemeral.public_key().public_bytes_raw()
        shared = ephemeral.exchange(X25519PublicKey.from_public_bytes(self._recipient))
        nonce = os.urandom(NONCE_LEN)
        body: bytes = self._box_key(shared, eph_pub).encrypt(nonce, b"".join([*table, plain]),
                                                      self._ad(key))
        return bytes([BOX_TAG]) + eph_pub + nonce + body

    def seal(self, key: str, parts: Sequence[Buffer]) -> Sequence[Buffer]:
        plain: Buffer = parts[0] if len(parts) == 1 else b"".join(parts)
        if _is_manifest(key):
            return (self._seal_manifest(key, bytes(plain)),)
        aead = self._chunk_aead(key, f"blob {key.rsplit('/', 1)[-1]}")
        size = memoryview(plain).nbytes
        out = bytearray(OVERHEAD + size)
        nonce = os.urandom(NONCE_LEN)
        out[0] = SEALED_TAG
        out[1 : 1 + NONCE_LEN] = nonce
        aead.encrypt_into(nonce, plain, self._ad(key), memoryview(out)[1 + NONCE_LEN :])
        return (out,)

    def open(self, key: str, data: Buffer, *, what: str) -> Buffer:
        raise RestoreKeyRequired(
            f"{what}: this host holds a writer key of a write-only store: it can add "
            "checkpoints, not read them (use a restore passphrase)"
        )


class RestoreSealing(WriterSealing):
    """A restore host's sealing of a write-only store (from the master key): names and
    seals as a writer, and opens manifests (learning their chunks' keys) and chunks."""

    can_read = True

    def __init__(self, master: bytes, store_id: str) -> None:
        if len(master) != 32:
            raise ValueError("a master key is 32 bytes")
        super().__init__(writer_secret(master), store_id)
        self._private = _derive(master, _FROM_MASTER["private"])

    def _open_manifest(self, key: str, view: memoryview, what: str) -> bytes:
        from cryptography.exceptions import InvalidTag
        from cryptography.hazmat.primitives.asymmetric.x25519 import (
            X25519PrivateKey,
            X25519PublicKey,
        )

        if len(view) < _BOX_HEAD + 16 + 4 or view[0] != BOX_TAG:
            raise IntegrityError(f"{what} is not sealed for this write-only store")
        eph_pub = bytes(view[1 : 1 + _PUB])
        try:
            shared = X25519PrivateKey.from_private_bytes(self._private).exchange(
                X25519PublicKey.from_public_bytes(eph_pub)
            )
            plain: bytes = self._box_key(shared, eph_pub).decrypt(
                bytes(view[1 + _PUB : _BOX_HEAD]), bytes(view[_BOX_HEAD:]), self._ad(key)
            )
        except (InvalidTag, ValueError) as exc:
            raise IntegrityError(
                f"{what} is corrupt: it does not authenticate (altered, or moved from "
                "another name)"
            ) from exc
        (count,) = struct.unpack_from(">I", plain)
        end = 4 + 64 * count
        if end > len(plain):
            raise IntegrityError(f"{what} is corrupt: its key table is truncated")
        with self._keys_lock:
            for at in range(4, end, 64):
                self._keys[plain[at : at + 32].hex()] = plain[at + 32 : at + 64]
        return plain[end:]

    def open(self, key: str, data: Buffer, *, what: str) -> Buffer:
        from cryptography.exceptions import InvalidTag

        view = memoryview(data).cast("B")
        if _is_manifest(key):
            return self._open_manifest(key, view, what)
        if not is_sealed(view):
            raise IntegrityError(
                f"{what} is not encrypted, in an encrypted store (written by a client "
                "that did not know the store is encrypted, or planted)"
            )
        aead = self._chunk_aead(key, what)
        out = bytearray(len(view) - OVERHEAD)
        try:
            aead.decrypt_into(view[1 : 1 + NONCE_LEN], view[1 + NONCE_LEN :], self._ad(key), out)
        except InvalidTag as exc:
            raise IntegrityError(
                f"{what} is corrupt: it does not authenticate (altered, or moved from "
                "another name)"
            ) from exc
        return out
