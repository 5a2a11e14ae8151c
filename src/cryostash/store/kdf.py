"""The key derivation of key objects: what cryostash writes, what it accepts, and the one
place scrypt runs.

cryostash writes scrypt with ``N = 2**15, r = 8, p = 1`` (:data:`SCRYPT_N`...: 32 MiB of
memory, ~0.1 s). A key object is read by anyone who opens the store, and anyone who can
write to the store can plant one, so the parameters a key object asks for are accepted
only up to about twice that cost (:func:`parse_kdf`):

- memory ``128 * N * r`` bytes at most :data:`MAX_MEMORY` (64 MiB);
- work ``N * r * p`` at most :data:`MAX_WORK` (``2**19``, twice the default's ``2**18``);
- ``N`` a power of two > 1, ``r`` and ``p`` at least 1, a salt of 16 to 64 bytes.

A key object asking for more is refused **before** any derivation, with
:class:`KdfRefused` naming the object and the cost; it is never derived with other
parameters instead. :func:`derive` is the only caller of scrypt (tests count its calls).
"""

from __future__ import annotations

import base64
from dataclasses import dataclass
from typing import Any

#: What cryostash writes: 2**15 * 8 * 128 B = 32 MiB, ~0.1 s.
SCRYPT_N, SCRYPT_R, SCRYPT_P = 1 << 15, 8, 1
#: The most memory a key object may ask for (twice the default).
MAX_MEMORY = 2 * 128 * SCRYPT_N * SCRYPT_R
#: The most work (``N * r * p``) a key object may ask for (twice the default).
MAX_WORK = 2 * SCRYPT_N * SCRYPT_R * SCRYPT_P
SALT_BYTES = (16, 64)


class KdfRefused(ValueError):
    """A key object's derivation parameters are malformed or cost too much."""


@dataclass(frozen=True)
class KdfParams:
    """scrypt parameters of one key object (within the bounds)."""

    salt: bytes
    n: int
    r: int
    p: int

    @property
    def memory(self) -> int:
        """Bytes scrypt needs (its ``V`` array)."""
        return 128 * self.n * self.r

    @property
    def work(self) -> int:
        """Relative time: ``N * r * p``."""
        return self.n * self.r * self.p


def _mib(size: int) -> str:
    return f"{size / (1 << 20):g} MiB"


def parse_kdf(kdf: Any, where: str) -> KdfParams:
    """The parameters of the ``kdf`` field of key object ``where`` (its path).

    Raises:
        KdfRefused: not scrypt, malformed, or costing more than the bounds (see the
            module docstring); the message names ``where`` and the cost.
    """
    if not isinstance(kdf, dict) or kdf.get("name") != "scrypt":
        raise KdfRefused(f"key object {where}: unknown key derivation")
    n, r, p = kdf.get("n"), kdf.get("r"), kdf.get("p")
    if not all(type(v) is int and v > 0 for v in (n, r, p)):
        raise KdfRefused(f"key object {where}: malformed scrypt parameters")
    assert isinstance(n, int) and isinstance(r, int) and isinstance(p, int)
    if n < 2 or n & (n - 1):
        raise KdfRefused(f"key object {where}: scrypt N={n} is not a power of two")
    memory, work = 128 * n * r, n * r * p
    if memory > MAX_MEMORY or work > MAX_WORK:
        raise KdfRefused(
            f"key object {where} asks scrypt N={n}, r={r}, p={p}: {_mib(memory)} of memory "
            f"and {work / (SCRYPT_N * SCRYPT_R * SCRYPT_P):g}x the default work; refused "
            f"(at most {_mib(MAX_MEMORY)} and 2x: cryostash never writes more)"
        )
    try:
        salt = base64.b64decode(str(kdf.get("salt")), validate=True)
    except ValueError:
        raise KdfRefused(f"key object {where}: malformed salt") from None
    if not SALT_BYTES[0] <= len(salt) <= SALT_BYTES[1]:
        raise KdfRefused(f"key object {where}: salt of {len(salt)} bytes")
    return KdfParams(salt, n, r, p)


def derive(passphrase: bytes, params: KdfParams) -> bytes:
    """The 32-byte key-encryption key of ``passphrase`` under ``params`` (scrypt)."""
    from cryptography.hazmat.primitives.kdf.scrypt import Scrypt

    return Scrypt(salt=params.salt, length=32, n=params.n, r=params.r, p=params.p).derive(
        passphrase
    )
