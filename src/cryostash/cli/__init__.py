"""The ``cryostash`` command line (imports only the public API)."""

from __future__ import annotations

import sys


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``cryostash`` console script."""
    from cryostash.cli.app import run

    return run(argv)


if __name__ == "__main__":
    sys.exit(main())
