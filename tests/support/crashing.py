"""Run the ``cryostash`` command SIGKILLed at a phase of a create (test support).

Usage: ``python crashing.py PHASE ARGS...``

Installs a :mod:`cryostash.hooks` observer that sends SIGKILL to this process when a
create reaches PHASE (one of :data:`cryostash.hooks.PHASES`), as a power cut or the OOM
killer would: no ``finally`` block, no clean-up, no atexit. Then runs ``cryostash ARGS``
exactly as ``python -m cryostash ARGS`` does (same module, same exit code). The crash
tests prove the commit protocol with it (see ``docs/reliability.md``).
"""

from __future__ import annotations

import os
import runpy
import signal
import sys
from collections.abc import Callable
from pathlib import Path

#: This launcher, to run with ``sys.executable``.
SCRIPT = Path(__file__).resolve()


def kill_at(phase: str) -> Callable[[str], None]:
    """An observer that SIGKILLs this process when ``phase`` is reached."""

    def observer(reached: str) -> None:
        if reached == phase:
            os.kill(os.getpid(), signal.SIGKILL)

    return observer


def main() -> None:
    from cryostash import hooks

    if len(sys.argv) < 2 or sys.argv[1] not in hooks.PHASES:
        sys.exit(f"usage: crashing.py PHASE ARGS... (PHASE: {', '.join(hooks.PHASES)})")
    phase, args = sys.argv[1], sys.argv[2:]
    hooks.add_observer(kill_at(phase))
    sys.argv = ["cryostash", *args]
    runpy.run_module("cryostash", run_name="__main__", alter_sys=True)


if __name__ == "__main__":
    main()
