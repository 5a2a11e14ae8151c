"""Run the ``cryostash`` command once a start file appears (test support).

Usage: ``python cli_barrier.py READY GO ARGS...``

Imports the command and the libraries it uses, creates READY, waits (at most
two minutes) for GO to exist, then runs ``cryostash ARGS`` exactly as
``python -m cryostash ARGS`` does (same module, same exit code). Starting N of these
and creating GO once every READY exists makes N commands race on the work itself,
not on their start-up.
"""

import contextlib
import os
import runpy
import sys
import time


def main() -> None:
    ready, go, args = sys.argv[1], sys.argv[2], sys.argv[3:]
    import cryostash.cli.app  # the parser and every verb
    import cryostash.repository  # noqa: F401  (SQLAlchemy, fsspec, the catalog)

    for optional in ("s3fs", "psycopg"):
        with contextlib.suppress(ImportError):
            __import__(optional)
    with open(ready, "w"):
        pass
    deadline = time.monotonic() + 120
    while not os.path.exists(go):
        if time.monotonic() > deadline:
            sys.exit(f"cli_barrier: {go} did not appear within 120 s")
        time.sleep(0.005)
    sys.argv = ["cryostash", *args]
    runpy.run_module("cryostash", run_name="__main__", alter_sys=True)


if __name__ == "__main__":
    main()
