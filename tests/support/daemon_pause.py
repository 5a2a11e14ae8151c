"""Run ``cryostash daemon`` with a create that pauses (test support).

Usage: ``python daemon_pause.py PHASE READY GO ARGS...``

Installs a :mod:`cryostash.hooks` observer that, when a create reaches PHASE, creates
READY and waits (at most two minutes) for GO to exist; then runs ``cryostash ARGS``
exactly as ``python -m cryostash ARGS`` does. A test holds an operation in flight this
way (to send the daemon SIGTERM meanwhile), then lets it finish by creating GO.
"""

import os
import runpy
import sys
import time


def main() -> None:
    phase, ready, go, args = sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4:]
    from cryostash import hooks

    def pause(reached: str) -> None:
        if reached != phase:
            return
        with open(ready, "w"):
            pass
        deadline = time.monotonic() + 120
        while not os.path.exists(go):
            if time.monotonic() > deadline:
                raise RuntimeError(f"daemon_pause: {go} did not appear within 120 s")
            time.sleep(0.01)

    hooks.add_observer(pause)
    sys.argv = ["cryostash", *args]
    runpy.run_module("cryostash", run_name="__main__", alter_sys=True)


if __name__ == "__main__":
    main()
