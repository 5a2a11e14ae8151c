"""A store's configuration object, ``cryostash-store.json`` at the store root: format,
store id, creation time and encryption (or none). Written create-only by ``store init``
after the first key (its commit marker, see :mod:`.keys`); a store without one is a plain
store.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

from cryostash.errors import IntegrityError
from cryostash.store import writeonly
from cryostash.store.sealing import AEAD_NAME, NAMES

CONFIG = "cryostash-store.json"
CONFIG_VERSION = 1


@dataclass(frozen=True)
class StoreConfig:
    """A store's configuration object.

    Attributes:
        id: random store id (hex), bound into every sealed object and key.
        encrypted: chunks and manifests are sealed (see :mod:`~cryostash.store.sealing`).
        created_at: when ``store init`` ran (ISO 8601, UTC).
        writers: encrypted with write-only hosts (:mod:`~cryostash.store.writeonly`).
    """

    id: str
    encrypted: bool
    created_at: str
    version: int = CONFIG_VERSION
    writers: bool = False

    def to_bytes(self) -> bytes:
        encryption: dict[str, str] | None = (
            {"aead": AEAD_NAME, "names": NAMES, "kdf": "scrypt"}
            if self.encrypted
            else None
        )
        if encryption is not None and self.writers:
            encryption.update(names=writeonly.NAMES, manifests=writeonly.MANIFESTS)
        obj = {
            "format": "cryostash-store",
            "version": self.version,
            "id": self.id,
            "created_at": self.created_at,
            "encryption": encryption,
        }
        return json.dumps(obj, sort_keys=True, indent=1).encode() + b"\n"

    @classmethod
    def from_bytes(cls, data: bytes, url: str) -> StoreConfig:
        """Parse a configuration object.

        Raises:
            IntegrityError: not a configuration object, or one of a newer version.
        """
        where = f"store configuration {CONFIG} of {url}"
        try:
            obj = json.loads(data)
            if not isinstance(obj, dict) or obj.get("format") != "cryostash-store":
                raise ValueError("not a cryostash store configuration")
            version = obj["version"]
            if version != CONFIG_VERSION:
                raise IntegrityError(
                    f"{where} has version {version!r}, which this cryostash cannot use: "
                    "upgrade cryostash"
                )
            enc = obj["encryption"]
            if enc is not None and (
                not isinstance(enc, dict) or enc.get("aead") != AEAD_NAME
                or enc.get("names") not in (NAMES, writeonly.NAMES)
            ):
                raise ValueError(f"unknown encryption {enc!r}")
            store_id, created = obj["id"], obj["created_at"]
            if not isinstance(store_id, str) or not isinstance(created, str):
                raise ValueError("id and created_at must be strings")
            writers = enc is not None and enc["names"] == writeonly.NAMES
            return cls(store_id, enc is not None, created, writers=writers)
        except IntegrityError:
            raise
        except (ValueError, KeyError, TypeError) as exc:
            raise IntegrityError(f"{where} is corrupt: {exc}") from exc
