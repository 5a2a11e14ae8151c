"""A store's keys (``store init``, ``key add|list|remove``); its configuration object is
:mod:`.store_config`.

Objects, at the store root (outside ``checkpoints/`` and ``blobs/``: no gc, verify or
rebuild of any cryostash version looks at them)::

    cryostash-store.json     the configuration: format, store id, encryption (or null)
    keys/<id>.json           one key: the master key wrapped by one passphrase (or, in a
                             store with write-only hosts, a writer key: the writer secret
                             and the manifest public key, see :mod:`.writeonly`)

The configuration is written create-only, last (after the first key): it is the
commit marker of ``store init``. A store without one is a plain store (every store made
before it existed). With encryption, the 32-byte master key is random
(``os.urandom``) and never stored in the clear: each key object holds it sealed with
AES-256-GCM under a key-encryption key derived from a passphrase by scrypt (parameters
and a random 16-byte salt recorded in the object; associated data: store id and key id,
so a key object moved to another store or name does not open). Unwrapping tries every
key object once, cheapest first; parameters costing more than twice what cryostash
writes are refused before any derivation (:mod:`.kdf`: a planted object cannot make a
host allocate gigabytes or spend seconds per object). Removing a key can never leave the
store without a restore key, whatever runs concurrently (:mod:`.key_removal`).

Nothing here logs, prints or puts a passphrase or key into a message.
"""

from __future__ import annotations

import base64
import contextlib
import getpass
import json
import os
import secrets
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from cryostash.config.secrets import PassphraseSource
from cryostash.errors import (
    CryostashError,
    KeyRequired,
    RestoreKeyRequired,
    UsageError,
    WrongKey,
)
from cryostash.objects.backend import Backend
from cryostash.objects.errors import NotFound
from cryostash.objects.key import Key, Kind
from cryostash.store import kdf, key_removal, writeonly
from cryostash.store.kdf import SCRYPT_N, SCRYPT_P, SCRYPT_R
from cryostash.store.sealing import AEAD_NAME, PLAIN, KeyedSealing, Sealing
from cryostash.store.store_config import CONFIG, StoreConfig
from cryostash.store.translate import translating

KEYS = "keys"
#: A key object is a few hundred bytes; a bigger object is not read.
MAX_KEY_BYTES = 64 << 10


@dataclass(frozen=True)
class KeyInfo:
    """One key object, as ``key list`` shows it (nothing secret)."""

    id: str
    created_at: str
    host: str
    user: str
    kdf: dict[str, Any] = field(default_factory=dict)
    kind: str = "restore"  #: ``restore`` (the master key) or ``writer``

    def as_dict(self) -> dict[str, Any]:
        return {"id": self.id, "created_at": self.created_at, "host": self.host,
                "user": self.user, "kdf": dict(self.kdf), "kind": self.kind}


@dataclass(frozen=True)
class Unlocked:
    """An opened encrypted store: its sealing, the id of the key that opened it and the
    master key (for ``key add``; never shown: ``repr`` hides it). ``writer``: opened by a
    writer key (``master`` is then empty: it cannot add or remove keys)."""

    sealing: Sealing
    key_id: str
    master: bytes = field(repr=False)
    writer: bool = False


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


def _key_path(key_id: str) -> Key:
    return Key(Kind.KEY, f"{KEYS}/{key_id}.json", key_id)


#: The key of the configuration object.
CONFIG_KEY = Key(Kind.CONFIG, CONFIG)


def _key_ad(store_id: str, key_id: str, kind: str = "restore") -> bytes:
    label = "cryostash-writer-key" if kind == "writer" else "cryostash-key"
    return f"{label}\0{store_id}\0{key_id}".encode()


def _user() -> str:
    try:
        return getpass.getuser()
    except (OSError, KeyError):
        return ""


def _wrap(config: StoreConfig, master: bytes, passphrase: bytes, host: str,
          kind: str = "restore") -> tuple[str, bytes]:
    from cryptography.hazmat.primitives.ciphers.aead import AESGCM

    key_id = secrets.token_hex(8)
    salt, nonce = os.urandom(16), os.urandom(12)
    kek = kdf.derive(passphrase, kdf.KdfParams(salt, SCRYPT_N, SCRYPT_R, SCRYPT_P))
    wrapped = AESGCM(kek).encrypt(nonce, master, _key_ad(config.id, key_id, kind))
    b64 = base64.b64encode
    obj: dict[str, Any] = {"kind": kind} if kind == "writer" else {}
    obj |= {
        "version": 1,
        "id": key_id,
        "created_at": _now(),
        "host": host,
        "user": _user(),
        "kdf": {"name": "scrypt", "n": SCRYPT_N, "r": SCRYPT_R, "p": SCRYPT_P,
                "salt": b64(salt).decode()},
        "aead": AEAD_NAME,
        "nonce": b64(nonce).decode(),
        "wrapped": b64(wrapped).decode(),
    }
    return key_id, json.dumps(obj, sort_keys=True, indent=1).encode() + b"\n"


def _parse_key(data: bytes, key_id: str = "?") -> tuple[dict[str, Any], kdf.KdfParams]:
    """A key object's fields and its (bounded) derivation parameters.

    Raises:
        ValueError (KdfRefused among them, naming the object): not a key object of ours.
    """
    where = f"{KEYS}/{key_id}.json"
    if len(data) > MAX_KEY_BYTES:
        raise kdf.KdfRefused(f"key object {where} is {len(data)} bytes: not a key object")
    obj = json.loads(data)
    if not isinstance(obj, dict) or obj.get("aead") != AEAD_NAME:
        raise ValueError(f"key object {where}: unknown cipher")
    return dict(obj), kdf.parse_kdf(obj.get("kdf"), where)


def _is_restore_key(key_id: str, data: bytes) -> bool:
    """``data`` is a well-formed restore key object (one that can hold the master key)."""
    try:
        obj, _params = _parse_key(data, key_id)
    except (ValueError, TypeError):
        return False
    return obj.get("kind") != "writer"


class Keyring:
    """The configuration and key objects of one store, through its backend.

    Args:
        backend: the store's backend (retrying). url: for messages (no credentials).
    """

    def __init__(self, backend: Backend, url: str) -> None:
        self._backend = backend
        self.url = url

    def _guard(self, op: str, where: str, **kw: Callable[[], CryostashError]) -> Any:
        return translating(op, where, url=self.url, **kw)

    def read_config(self) -> StoreConfig | None:
        """The configuration object, or None (a plain store made without ``store init``).

        Raises:
            IntegrityError: a corrupt or newer configuration. StorageError: unreadable.
        """
        with self._guard("read", CONFIG):
            try:
                data = self._backend.get(CONFIG_KEY)
            except NotFound:  # no store there (yet)
                return None
        return StoreConfig.from_bytes(data, self.url)

    def init(self, *, passphrase: bytes | None, host: str, writers: bool = False) -> StoreConfig:
        """Create the configuration (encrypted when ``passphrase`` is given: a random
        master key, wrapped by it as the first key; ``writers``: with write-only hosts).

        Raises:
            UsageError: the store has a configuration already, or (for encryption) holds
                checkpoints or chunks already. StorageError: a write failed.
        """
        if writers and passphrase is None:
            raise UsageError("write-only keys need an encrypted store (--encrypt)")
        if self.read_config() is not None:
            raise UsageError(f"store {self.url} is initialised already ({CONFIG} exists)")
        if passphrase is not None:
            with self._guard("list", "objects"):
                used = self._backend.has_any("checkpoints") or self._backend.has_any("blobs")
            if used:
                raise UsageError(
                    f"store {self.url} holds checkpoints or chunks already: encryption can "
                    "only be set up on an empty store (migrate the checkpoints into a new "
                    "encrypted store instead)"
                )
        config = StoreConfig(secrets.token_hex(16), passphrase is not None, _now(),
                             writers=writers)
        key_id = None
        if passphrase is not None:
            key_id, data = _wrap(config, os.urandom(32), passphrase, host)
            with self._guard("write", f"key {key_id}"):
                self._backend.create(_key_path(key_id), data)
        try:
            exists = lambda: UsageError(f"store {self.url} is initialised already")  # noqa: E731
            with self._guard("write", CONFIG, exists=exists):
                self._backend.create(CONFIG_KEY, config.to_bytes())
        except BaseException:
            if key_id is not None:
                with contextlib.suppress(Exception):
                    self._backend.delete(_key_path(key_id))
            raise
        return config

    def _key_objects(self) -> list[tuple[str, bytes]]:
        with self._guard("list", KEYS):
            listed = self._backend.scan(KEYS)
        found = []
        for info in sorted(listed, key=lambda o: o.key):
            name = info.key.rsplit("/", 1)[-1]
            if not name.endswith(".json") or name.startswith("."):
                continue
            key_id = name[: -len(".json")]
            if info.size > MAX_KEY_BYTES:  # not read: refused by _parse_key by its size
                found.append((key_id, b" " * (MAX_KEY_BYTES + 1)))
                continue
            with self._guard("read", info.key):
                found.append((key_id, self._backend.get(Key(Kind.KEY, info.key, key_id))))
        return found

    def list_keys(self) -> list[KeyInfo]:
        """Every key object (damaged ones are listed with host ``?``)."""
        keys = []
        for key_id, data in self._key_objects():
            try:
                obj, _params = _parse_key(data, key_id)
                kdf = {k: v for k, v in obj["kdf"].items() if k != "salt"}
                keys.append(KeyInfo(key_id, str(obj.get("created_at", "")),
                                    str(obj.get("host", "")), str(obj.get("user", "")), kdf,
                                    "writer" if obj.get("kind") == "writer" else "restore"))
            except (ValueError, KeyError, TypeError):
                keys.append(KeyInfo(key_id, "", "?", "?"))
        return keys

    def unlock(self, config: StoreConfig, passphrase: bytes) -> Unlocked:
        """Open the store with ``passphrase``: the first key object it unwraps, trying
        each once, cheapest derivation first (the same salt and parameters are derived
        once); objects whose parameters are out of bounds are skipped, never derived.

        Raises:
            WrongKey: no key object opens with it (the message never shows it; it names
                the key objects refused for their parameters).
        """
        from cryptography.exceptions import InvalidTag
        from cryptography.hazmat.primitives.ciphers.aead import AESGCM

        objects = self._key_objects()
        refused: list[str] = []
        candidates = []
        for key_id, data in objects:
            try:
                candidates.append((key_id, *_parse_key(data, key_id)))
            except kdf.KdfRefused as exc:
                refused.append(str(exc))
            except (ValueError, TypeError):
                continue
        keks: dict[kdf.KdfParams, bytes] = {}
        for key_id, obj, params in sorted(candidates, key=lambda c: (c[2].work, c[2].memory)):
            try:
                if params not in keks:
                    keks[params] = kdf.derive(passphrase, params)
                nonce = base64.b64decode(obj["nonce"], validate=True)
                wrapped = base64.b64decode(obj["wrapped"], validate=True)
                kind = "writer" if obj.get("kind") == "writer" else "restore"
                master = AESGCM(keks[params]).decrypt(
                    nonce, wrapped, _key_ad(config.id, key_id, kind)
                )
            except (InvalidTag, ValueError, KeyError, TypeError):
                continue
            sealing: Sealing
            if kind == "writer" and config.writers and len(master) == 64:
                sealing = writeonly.WriterSealing(master, config.id)
                return Unlocked(sealing, key_id, b"", writer=True)
            if kind == "restore" and len(master) == 32:
                sealing = (writeonly.RestoreSealing if config.writers else KeyedSealing)(
                    master, config.id)
                return Unlocked(sealing, key_id, master)
        why = "".join(f"; {reason}" for reason in refused)
        raise WrongKey(
            f"wrong passphrase for encrypted store {self.url}: none of its "
            f"{len(objects)} keys opens with it{why}"
        )

    def add_key(self, config: StoreConfig, unlocked: Unlocked, passphrase: bytes,
                host: str, *, writer: bool = False) -> str:
        """Wrap the master key (``writer``: the writer secret) with one more
        ``passphrase``; its key id.

        Raises:
            RestoreKeyRequired: opened by a writer key. UsageError: a writer key asked of
                a store without write-only hosts.
        """
        self.check_add(config, unlocked, writer=writer)
        secret = writeonly.writer_secret(unlocked.master) if writer else unlocked.master
        key_id, data = _wrap(config, secret, passphrase, host, "writer" if writer else "restore")
        with self._guard("write", f"key {key_id}"):
            self._backend.create(_key_path(key_id), data)
        return key_id

    def check_add(self, config: StoreConfig, unlocked: Unlocked, *, writer: bool) -> None:
        """Raise as :meth:`add_key` would (before asking a new passphrase)."""
        if unlocked.writer:
            raise RestoreKeyRequired(
                f"a writer key cannot add keys to {self.url}: use a restore passphrase")
        if writer and not config.writers:
            raise UsageError(
                f"store {self.url} was not made with write-only keys (store init --encrypt "
                "--write-only-keys): make such a store and migrate into it")

    def remove_key(self, key_id: str, unlocked: Unlocked) -> None:
        """Remove key ``key_id``, never the last restore key, whatever runs concurrently
        (the protocol: :mod:`cryostash.store.key_removal`).

        Raises:
            RestoreKeyRequired: opened by a writer key. UsageError: no such key, it is the
                key in use (open with another passphrase to remove it), or no other
                restore key would be left for sure (another removal under way).
        """
        if unlocked.writer:
            raise RestoreKeyRequired(
                f"a writer key cannot remove keys of {self.url}: use a restore passphrase")
        key_removal.remove(
            self._backend, self.url, key_id, unlocked.key_id, prefix=KEYS,
            guard=self._guard, is_restore_key=_is_restore_key,
        )


class KeyState:
    """The key state of one Store (shared with its cached views): the passphrase source,
    whether a passphrase is expected, and what was resolved, once (thread-safe).

    Args:
        source: called once if the store is encrypted; None: no passphrase.
        expect: a passphrase is configured: a store that is not encrypted is refused.
    """

    def __init__(self, source: PassphraseSource | None, expect: bool) -> None:
        self.source = source
        self.expect = expect
        self.config: StoreConfig | None = None
        self.unlocked: Unlocked | None = None
        self._sealing: Sealing | None = None
        self._lock = threading.Lock()

    def sealing(self, keyring: Keyring, *, restore: bool = False) -> Sealing:
        """The store's sealing, resolved on first call: read the configuration; if it is
        encrypted ask the passphrase and unwrap the master key. ``restore``: the caller
        will read checkpoints (refused to a writer key).

        Raises:
            KeyRequired, WrongKey, IntegrityError, StorageError (see ``Store.sealing``).
            RestoreKeyRequired: ``restore``, and the store was opened by a writer key.
        """
        with self._lock:
            if self._sealing is None:
                self._sealing = self._resolve(keyring)
            sealing = self._sealing
        if restore and not sealing.can_read:
            raise RestoreKeyRequired(
                f"store {keyring.url} is opened with a writer key: it can add checkpoints, "
                "not read, verify, gc or rebuild them (give a restore passphrase)"
            )
        return sealing

    def _resolve(self, keyring: Keyring) -> Sealing:
        config = self.config = keyring.read_config()
        url = keyring.url
        if config is None or not config.encrypted:
            if self.expect:
                raise KeyRequired(
                    f"store {url} is not encrypted, but a passphrase is set "
                    "(CRYOSTASH_PASSWORD...): refusing to use it in the clear (unset the "
                    f"passphrase for plain stores; if it was encrypted, {CONFIG} was removed)"
                )
            return PLAIN
        secret = self.source() if self.source is not None else None
        if secret is None:
            raise KeyRequired(
                f"store {url} is encrypted: give its passphrase in CRYOSTASH_PASSWORD, "
                "CRYOSTASH_PASSWORD_FILE or CRYOSTASH_PASSWORD_COMMAND (or run on a terminal)"
            )
        self.unlocked = keyring.unlock(config, secret)
        return self.unlocked.sealing
