"""``cryostash store init [--encrypt]``: create a store's configuration object.

With ``--encrypt`` a random master key is made and wrapped by the passphrase
(``CRYOSTASH_PASSWORD``, ``CRYOSTASH_PASSWORD_FILE``, ``CRYOSTASH_PASSWORD_COMMAND`` or
asked twice on the terminal); from then on every chunk and manifest written to the store
is encrypted and authenticated (see docs/security.md). Only an empty store can be
encrypted. ``--write-only-keys`` (with ``--encrypt``) makes a store that can also be given
writer keys (``key add --writer``): hosts that add checkpoints without being able to read
any (see docs/security.md).
"""

from __future__ import annotations

import argparse
from typing import Any

from cryostash.cli.context import Context, print_json
from cryostash.cli.present import say


def register(sub: Any) -> None:
    """Add the ``store`` sub-parser and its ``init`` action."""
    p: argparse.ArgumentParser = sub.add_parser("store", help="store set-up (encryption)")
    actions = p.add_subparsers(dest="store_action", metavar="ACTION", required=True)
    init = actions.add_parser("init", help="write the store's configuration (optionally encrypted)")
    init.add_argument("--checkpoint-dir", metavar="URL", help="initialise this store")
    init.add_argument(
        "--encrypt", action="store_true",
        help="encrypt and authenticate everything stored (needs a passphrase)",
    )
    init.add_argument(
        "--write-only-keys", action="store_true",
        help="with --encrypt: allow writer keys (key add --writer) that cannot read checkpoints",
    )
    init.add_argument("--json", action="store_true", help="print the configuration as JSON")
    init.set_defaults(func=run_init)


def run_init(args: argparse.Namespace, ctx: Context) -> int:
    """Write the configuration; print the store id and whether it is encrypted."""
    from cryostash.config import secrets
    from cryostash.errors import KeyRequired, UsageError

    if args.write_only_keys and not args.encrypt:
        raise UsageError("--write-only-keys needs --encrypt")
    store = ctx.repository.store(args.checkpoint_dir)
    passphrase = None
    if args.encrypt:
        passphrase = secrets.passphrase(ask=True, confirm=True)
        if passphrase is None:
            raise KeyRequired(
                "store init --encrypt needs a passphrase: set CRYOSTASH_PASSWORD, "
                "CRYOSTASH_PASSWORD_FILE or CRYOSTASH_PASSWORD_COMMAND, or run on a terminal"
            )
        secrets.long_enough(passphrase)
    config = store.keyring.init(
        passphrase=passphrase, host=ctx.settings.host, writers=args.write_only_keys
    )
    if args.json:
        print_json({"url": store.url, "id": config.id, "encrypted": config.encrypted,
                    "write_only_keys": config.writers})
        return 0
    kind = "encrypted store" if config.encrypted else "store"
    kind += " (write-only keys allowed)" if config.writers else ""
    say(f"initialised {kind} {store.url} (id {config.id})")
    if config.encrypted:
        say(
            "The data cannot be read without a passphrase of this store: losing every "
            "passphrase loses every checkpoint (add a second one: cryostash key add).",
            err=True,
        )
    return 0
