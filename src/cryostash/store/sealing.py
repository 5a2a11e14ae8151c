"""How a store names and seals what it keeps: plain (BLAKE3, as is) or keyed (encrypted).

:class:`Sealing` is the plain store: a chunk is named by the BLAKE3 of its plain bytes, a
manifest's digest is its BLAKE3, objects are stored as the codec encodes them.

:class:`KeyedSealing` is an encrypted store, made from its 32-byte master key (see
:mod:`cryostash.store.keys`). Three sub-keys are derived with BLAKE3's key derivation
(one context string each): the *name* key, the *digest* key and the *data* key.

- A chunk's name is the keyed BLAKE3 (name key) of its plain bytes: the same content has
  the same name inside the store (deduplication works), while someone without the key
  can neither compute the name of a guessed content nor compare names across stores. The
  name of ``n`` zero bytes is keyed too (:meth:`Sealing.zero_name`).
- A manifest's digest (what the catalog row records) is the keyed BLAKE3 (digest key) of
  its plain bytes: it still binds row and manifest, and tells a catalog reader nothing.
- Every object (an encoded chunk, a manifest) is sealed with AES-256-GCM (data key): a
  random 96-bit nonce per object; associated data: the store's id and the object's key in
  the store (``blobs/ab/ab..``, ``checkpoints/T/N/manifest.json``). A flipped bit, an
  object renamed over another or a manifest copied to another checkpoint's folder fails
  authentication. Sealed object: ``0xE1 | nonce (12) | ciphertext | tag (16)``: 29 bytes
  more than the encoded chunk.

:meth:`Sealing.open` of a keyed sealing refuses an object that is not sealed (a plain
object written into an encrypted store by a client that did not know) and one that does
not authenticate, as IntegrityError naming the object, never the key. Thread-safe.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Sequence
from typing import Any

from cryostash.errors import IntegrityError
from cryostash.objects.backend import Buffer
from cryostash.store import codec

#: First byte of a sealed object (codec tags are 0x00 and 0x01; a manifest starts with ``{``).
SEALED_TAG = 0xE1
_SEALED = bytes([SEALED_TAG])
NONCE_LEN = 12
TAG_LEN = 16
#: Bytes a sealed object has beyond what it seals.
OVERHEAD = 1 + NONCE_LEN + TAG_LEN
AEAD_NAME = "AES-256-GCM"
NAMES = "keyed-BLAKE3"
_CONTEXTS = {
    "name": "cryostash 2025-06 chunk name key",
    "digest": "cryostash 2025-06 manifest digest key",
    "data": "cryostash 2025-06 object encryption key",
}


def is_sealed(data: Buffer) -> bool:
    """True if ``data`` starts like a sealed object."""
    view = memoryview(data).cast("B")
    return len(view) >= OVERHEAD and view[0] == SEALED_TAG


class Sealing:
    """The plain store: BLAKE3 names and digests, objects stored as given."""

    encrypted = False
    #: It opens what it seals (False: a write-only store's writer, which only seals).
    can_read = True
    #: Bytes a stored object has beyond its encoding (verify's size bounds).
    overhead = 0

    def __init__(self) -> None:
        self._zeros: dict[int, str] = {}
        self._lock = threading.Lock()

    def hasher(self) -> Any:
        """A fresh BLAKE3 hasher of this store's names: fed a chunk's plain bytes (in any
        pieces), :meth:`name_from` gives its :meth:`chunk_name`. A stream hash: a copy
        (``hasher.copy()``) taken after ``n`` bytes goes on as if fed them again."""
        import blake3

        return blake3.blake3()

    def name_from(self, hasher: Any) -> str:
        """The name of the bytes fed to ``hasher`` (from :meth:`hasher`)."""
        return str(hasher.hexdigest())

    def _hash(self, data: Buffer) -> str:
        hasher = self.hasher()
        hasher.update(data)
        return self.name_from(hasher)

    def chunk_name(self, data: Buffer) -> str:
        """The name (digest) of a chunk whose plain bytes are ``data``."""
        return self._hash(data)

    def zero_name(self, size: int) -> str:
        """The name of a chunk of ``size`` zero bytes (cached per size)."""
        with self._lock:
            name = self._zeros.get(size)
        if name is None:
            name = self.chunk_name(bytes(size))
            with self._lock:
                self._zeros[size] = name
        return name

    def manifest_digest(self, data: bytes) -> str:
        """The digest of the plain manifest bytes ``data`` (what the catalog records)."""
        import blake3

        return str(blake3.blake3(data).hexdigest())

    def seal(self, key: str, parts: Sequence[Buffer]) -> Sequence[Buffer]:
        """The stored object for the encoded ``parts`` of object ``key`` (as given here)."""
        return parts

    def open(self, key: str, data: Buffer, *, what: str) -> Buffer:
        """The encoded bytes of the stored object ``data`` of ``key`` (as given here)."""
        return data

    def verified(
        self, key: str, data: Buffer, digest: str, size: int | None, what: str | None
    ) -> bytes | memoryview:
        """The plain bytes of the stored chunk object ``data`` at ``key``: opened, decoded
        and checked against its name ``digest`` and plain ``size``
        (:func:`~cryostash.store.codec.verified`).

        Raises:
            IntegrityError: ``WHAT is corrupt: ...`` (or not sealed, in an encrypted store).
        """
        opened = self.open(key, data, what=what or f"blob {digest}")
        return codec.verified(opened, digest, size, what=what, name=self.chunk_name)


class KeyedSealing(Sealing):
    """An encrypted store's sealing (see the module docstring).

    Args:
        master: the 32-byte master key (never logged, never shown).
        store_id: the store's id (from its configuration object): bound into every object.
    """

    encrypted = True
    overhead = OVERHEAD

    def __init__(self, master: bytes, store_id: str) -> None:
        import blake3
        from cryptography.hazmat.primitives.ciphers.aead import AESGCM

        super().__init__()
        if len(master) != 32:
            raise ValueError("a master key is 32 bytes")
        keys = {
            use: blake3.blake3(master, derive_key_context=context).digest()
            for use, context in _CONTEXTS.items()
        }
        self._name_key: bytes = keys["name"]
        self._digest_key: bytes = keys["digest"]
        self._aead: Any = AESGCM(keys["data"])
        self._prefix = f"cryostash-object\0{store_id}\0".encode()

    def __repr__(self) -> str:
        return "KeyedSealing(<key>)"

    def hasher(self) -> Any:
        import blake3

        return blake3.blake3(key=self._name_key)

    def manifest_digest(self, data: bytes) -> str:
        import blake3

        return str(blake3.blake3(data, key=self._digest_key).hexdigest())

    def _ad(self, key: str) -> bytes:
        return self._prefix + key.encode()

    def seal(self, key: str, parts: Sequence[Buffer]) -> Sequence[Buffer]:
        plain: Buffer = parts[0] if len(parts) == 1 else b"".join(parts)
        size = memoryview(plain).nbytes
        out = bytearray(OVERHEAD + size)
        nonce = os.urandom(NONCE_LEN)
        out[0] = SEALED_TAG
        out[1 : 1 + NONCE_LEN] = nonce
        self._aead.encrypt_into(nonce, plain, self._ad(key), memoryview(out)[1 + NONCE_LEN :])
        return (out,)

    def open(self, key: str, data: Buffer, *, what: str) -> Buffer:
        from cryptography.exceptions import InvalidTag

        view = memoryview(data).cast("B")
        if not is_sealed(view):
            raise IntegrityError(
                f"{what} is not encrypted, in an encrypted store (written by a client "
                "that did not know the store is encrypted, or planted)"
            )
        nonce = view[1 : 1 + NONCE_LEN]
        out = bytearray(len(view) - OVERHEAD)
        try:
            self._aead.decrypt_into(nonce, view[1 + NONCE_LEN :], self._ad(key), out)
        except InvalidTag as exc:
            raise IntegrityError(
                f"{what} is corrupt: it does not authenticate (altered, or moved from "
                "another name)"
            ) from exc
        return out


#: The plain sealing (stateless but for its zero-name cache).
PLAIN = Sealing()
