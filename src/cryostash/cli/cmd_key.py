"""``cryostash key list|add|remove``: the passphrases of an encrypted store (like restic's).

Every action first opens the store with a current passphrase (``CRYOSTASH_PASSWORD``...
or the terminal). ``add`` wraps the master key with a new passphrase
(``--new-password-file``, ``CRYOSTASH_NEW_PASSWORD[_FILE]`` or asked twice); ``remove ID``
deletes a key other than the one in use (so the last key can never go). ``add --writer``
(a store made with ``store init --encrypt --write-only-keys``) adds a *writer* key: a host
opened with it adds checkpoints and deduplicates, but reads none (docs/security.md); a
writer key cannot add or remove keys. The data is
not re-encrypted: a removed passphrase can no longer open the store, but whoever knew
it and kept a copy of a key object or the master key still can (see docs/security.md).
"""

from __future__ import annotations

import argparse
from typing import Any

from cryostash.cli.context import Context, print_json
from cryostash.cli.present import say


def register(sub: Any) -> None:
    """Add the ``key`` sub-parser and its actions."""
    p: argparse.ArgumentParser = sub.add_parser("key", help="passphrases of an encrypted store")
    actions = p.add_subparsers(dest="key_action", metavar="ACTION", required=True)
    ls = actions.add_parser("list", help="list the keys (the one in use marked *)")
    add = actions.add_parser("add", help="add a passphrase")
    add.add_argument("--new-password-file", metavar="FILE", help="read the new passphrase here")
    add.add_argument(
        "--writer", action="store_true",
        help="a writer key: adds checkpoints, cannot read them (write-only-keys stores)",
    )
    rm = actions.add_parser("remove", help="remove a key (not the one in use)")
    rm.add_argument("key_id", metavar="ID", help="the key's id (key list)")
    for action, func in ((ls, run_list), (add, run_add), (rm, run_remove)):
        action.add_argument("--checkpoint-dir", metavar="URL", help="the store (default: --store)")
        action.add_argument("--json", action="store_true", help="print JSON")
        action.set_defaults(func=func)


def _opened(args: argparse.Namespace, ctx: Context) -> Any:
    from cryostash.errors import KeyRequired

    store = ctx.repository.store(args.checkpoint_dir)
    store.unlock()
    if store.keys.unlocked is None:
        raise KeyRequired(f"store {store.url} is not encrypted: it has no keys")
    return store


def run_list(args: argparse.Namespace, ctx: Context) -> int:
    """One line per key: id, created, host, user (``*``: the key in use)."""
    store = _opened(args, ctx)
    current = store.keys.unlocked.key_id
    keys = store.keyring.list_keys()
    if args.json:
        print_json([{**k.as_dict(), "current": k.id == current} for k in keys])
        return 0
    for k in keys:
        mark = "*" if k.id == current else " "
        say(f"{mark} {k.id}  {k.kind:<7}  {k.created_at}  {k.host}  {k.user}")
    return 0


def run_add(args: argparse.Namespace, ctx: Context) -> int:
    """Wrap the master key with a new passphrase; print the new key's id."""
    from cryostash.config import secrets

    store = _opened(args, ctx)
    keyring, unlocked, config = store.keyring, store.keys.unlocked, store.keys.config
    keyring.check_add(config, unlocked, writer=args.writer)  # before asking a passphrase
    new = secrets.new_passphrase(args.new_password_file)
    key_id = keyring.add_key(config, unlocked, new, ctx.settings.host, writer=args.writer)
    kind = "writer" if args.writer else "restore"
    if args.json:
        print_json({"id": key_id, "kind": kind})
    else:
        say(f"added {kind} key {key_id}")
    return 0


def run_remove(args: argparse.Namespace, ctx: Context) -> int:
    """Remove key ID (refused for the key in use)."""
    store = _opened(args, ctx)
    store.keyring.remove_key(args.key_id, store.keys.unlocked)
    if args.json:
        print_json({"removed": args.key_id})
    else:
        say(f"removed key {args.key_id}")
    return 0
