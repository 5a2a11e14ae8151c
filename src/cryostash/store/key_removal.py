"""Removing a key object without ever leaving a store with no restore key.

Two ``key remove`` running at once, each opened with the key the other removes, both see
two keys and would both delete one: no key left, every checkpoint unrecoverable. The
store has no transactions or locks, but it has create-only writes and read-after-write
listings (local disk; S3 since 2020), and that is enough for a Dekker-style protocol:

1. **announce**: create (create-only) an intent object ``keys/ID.removing-NONCE`` (a
   random nonce per attempt, so every attempt owns its own);
2. **look**: list ``keys/`` after the intent is stored;
3. **decide**: go on only if, besides ``ID``, a well-formed *restore* key object (not a
   writer key, parameters within :mod:`.kdf`'s bounds) is listed with **no** intent on
   it; otherwise delete the own intent and refuse;
4. **delete** ``keys/ID.json``, then every intent on ``ID`` (the own one last-but-not-
   least: an intent outlives its key).

Why no interleaving leaves zero restore keys: take the successful removal whose look came
last; it saw a key K with no intent. Whoever deletes K later wrote its intent on K before
its own look, which came before that last look, and kept the intent until K was gone, so
the last look would have seen it: K is never deleted. Keys added meanwhile only add live
keys (``key add`` creates its object create-only). Two removals that see each other's
intent both refuse (exit 2); run one again.

An attempt that dies between 1 and 4 leaves its intent: the key stays (and opens), but
counts as going away, so it can block removing the last other key ("removal under way");
``key remove ID`` again finishes it, or the intent object can be deleted by hand when no
removal runs.
"""

from __future__ import annotations

import contextlib
import json
import secrets
from collections.abc import Callable
from contextlib import AbstractContextManager
from typing import Any

from cryostash.errors import UsageError
from cryostash.objects.backend import Backend
from cryostash.objects.key import Key, Kind

#: ``guard(op, where)``: translates what the backend raises (the keyring's).
Guard = Callable[[str, str], AbstractContextManager[Any]]
#: ``is_restore_key(key_id, data)``: a well-formed restore key object within bounds.
RestoreKeyCheck = Callable[[str, bytes], bool]

#: The intent objects' name: ``keys/ID`` + this + a random nonce.
INTENT = ".removing-"


def _listing(
    guard: Guard, backend: Backend, prefix: str
) -> tuple[dict[str, str], dict[str, list[str]]]:
    """(key id -> object path, key id -> its intents' paths), from one listing."""
    with guard("list", prefix):
        listed = backend.scan(prefix)
    keys: dict[str, str] = {}
    intents: dict[str, list[str]] = {}
    for info in listed:
        name = info.key.rsplit("/", 1)[-1]
        if name.startswith("."):
            continue
        if INTENT in name:
            intents.setdefault(name.split(INTENT, 1)[0], []).append(info.key)
        elif name.endswith(".json"):
            keys[name[: -len(".json")]] = info.key
    return keys, intents


def remove(
    backend: Backend, url: str, key_id: str, in_use: str, *, prefix: str, guard: Guard,
    is_restore_key: RestoreKeyCheck,
) -> None:
    """Remove key ``key_id`` (objects under ``prefix``) by the protocol of the module
    docstring; ``in_use``: the id of the key that opened the store (never removed).

    Raises:
        UsageError: no such key; ``key_id`` is the key in use; no other restore key is
            certainly left. StorageError: the store failed (the own intent is removed
            when the key was not).
    """
    keys, _ = _listing(guard, backend, prefix)
    if key_id not in keys:
        raise UsageError(f"store {url} has no key {key_id!r}")
    if key_id == in_use:
        raise UsageError(
            f"key {key_id} is the one in use: give another key's passphrase to remove "
            "it (a store always keeps at least one key)"
        )
    base = keys[key_id][: -len(".json")]
    intent = Key(Kind.KEY, f"{base}{INTENT}{secrets.token_hex(8)}", key_id)
    note = {"removing": key_id, "by": in_use}
    with guard("write", f"removal intent of key {key_id}"):
        backend.create(intent, json.dumps(note).encode() + b"\n")
    try:
        keys, intents = _listing(guard, backend, prefix)
        if key_id not in keys:
            raise UsageError(f"store {url} has no key {key_id!r} (removed meanwhile)")
        live = [
            k for k, path in sorted(keys.items())
            if k != key_id and not intents.get(k) and is_restore_key(k, _read(backend, path))
        ]
        if not live:
            going = sorted(k for k in keys if k != key_id and intents.get(k))
            raise UsageError(
                f"refusing to remove key {key_id} of {url}: no other restore key would be "
                "left for sure"
                + (
                    f" (a removal of {', '.join(going)} is under way; if none runs, it was "
                    "interrupted: run `key remove` of that key again, or delete its "
                    f"{INTENT}* object)" if going else ""
                )
            )
        with guard("delete", f"key {key_id}"):
            backend.delete(Key(Kind.KEY, keys[key_id], key_id))
    except BaseException:
        with contextlib.suppress(Exception):
            backend.delete(intent)
        raise
    for path in [*sorted(set(intents.get(key_id, [])) - {intent.path}), intent.path]:
        with contextlib.suppress(Exception):  # an intent on a deleted key means nothing
            backend.delete(Key(Kind.KEY, path, key_id))


def _read(backend: Backend, path: str) -> bytes:
    from cryostash.errors import CryostashError
    from cryostash.objects.errors import NotFound

    try:
        return backend.get(Key(Kind.KEY, path))
    except (NotFound, CryostashError, OSError):
        return b""
