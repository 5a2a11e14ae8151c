"""Run the ``cryostash`` command SIGKILLed at a phase of a create (test support).

Usage: ``python crashing.py PHASE ARGS...``, or ``python crashing.py hold:PHASE:FILE
ARGS...`` to hold the create at PHASE instead: it creates ``FILE.reached`` and waits (at
most two minutes) for ``FILE.go`` to exist, then goes on (a live create, paused).

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
import time
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


def hold_at(phase: str, file: str) -> Callable[[str], None]:
    """An observer that pauses this process at ``phase`` until ``FILE.go`` exists."""

    def observer(reached: str) -> None:
        if reached != phase:
            return
        Path(f"{file}.reached").write_text(str(os.getpid()))
        deadline = time.monotonic() + 120
        while not Path(f"{file}.go").exists():
            if time.monotonic() > deadline:
                os.kill(os.getpid(), signal.SIGKILL)
            time.sleep(0.01)

    return observer


def main() -> None:
    from cryostash import hooks

    mode = sys.argv[1] if len(sys.argv) > 1 else ""
    held = mode.split(":", 2) if mode.startswith("hold:") else None
    if (held is None and mode not in hooks.PHASES) or (
        held is not None and (len(held) != 3 or held[1] not in hooks.PHASES)
    ):
        phases = ", ".join(hooks.PHASES)
        sys.exit(f"usage: crashing.py [hold:]PHASE[:FILE] ARGS... (PHASE: {phases})")
    args = sys.argv[2:]
    hooks.add_observer(kill_at(mode) if held is None else hold_at(held[1], held[2]))
    sys.argv = ["cryostash", *args]
    runpy.run_module("cryostash", run_name="__main__", alter_sys=True)


if __name__ == "__main__":
    main()
