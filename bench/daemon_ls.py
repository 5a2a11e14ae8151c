"""``cryostash ls`` through a daemon against the cold command in process, best and median of
N runs each, on a fresh local store and SQLite catalog in a temporary folder.

Usage::

    .venv/bin/python bench/daemon_ls.py [RUNS]

It starts ``cryostash daemon`` on a socket in that folder (the ``daemon`` extra), waits
until it answers, then times ``python -m cryostash --daemon unix://SOCK ls`` and
``python -m cryostash --no-daemon ls`` (each a new process, as a user runs it; wall
clock, interpreter start-up included; one unmeasured run of each first, so that the
bytecode is compiled as in an installed package) alternately, prints one line per way, and stops
the daemon by its PID (SIGTERM). Figures depend on the machine and its load: compare the
two lines of one run.
"""

from __future__ import annotations

import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def _env(home: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("CRYOSTASH_")}
    env.pop("PYTHONDONTWRITEBYTECODE", None)  # compiled once (warm-up), as installed
    env.update(
        CRYOSTASH_STORE=str(home / "store"),
        CRYOSTASH_CATALOG=f"sqlite:///{home / 'catalog.db'}",
        CRYOSTASH_SCRATCH=str(home / "scratch"),
        CRYOSTASH_HOST="bench",
        CRYOSTASH_CONFIG=str(home / "no-config.toml"),
    )
    return env


def _timed(args: list[str], env: dict[str, str]) -> float:
    t0 = time.perf_counter()
    subprocess.run([sys.executable, "-m", "cryostash", *args], env=env, check=True,
                   stdout=subprocess.DEVNULL)
    return time.perf_counter() - t0


def main(runs: int) -> None:
    """Time both ways ``runs`` times each and print the figures."""
    with tempfile.TemporaryDirectory(prefix="cs-bench-ls-") as tmp:
        home = Path(tmp)
        env = _env(home)
        sock = home / "run" / "cs.sock"
        daemon = subprocess.Popen(
            [sys.executable, "-m", "cryostash", "daemon", "--socket", str(sock)],
            env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )
        try:
            from cryostash.daemon import client

            deadline = time.monotonic() + 120
            while True:
                try:
                    client.status(sock, timeout=2.0)
                    break
                except Exception:
                    if time.monotonic() > deadline or daemon.poll() is not None:
                        raise SystemExit("the daemon did not start") from None
                    time.sleep(0.1)
            ways = {
                "daemon": ["--daemon", f"unix://{sock}", "ls"],
                "in process": ["--no-daemon", "ls"],
            }
            times: dict[str, list[float]] = {way: [] for way in ways}
            for args in ways.values():  # warm-up: bytecode written, page cache filled
                _timed(args, env)
            for _ in range(runs):
                for way, args in ways.items():
                    times[way].append(_timed(args, env))
        finally:
            os.kill(daemon.pid, signal.SIGTERM)
            daemon.wait(60)
    for way, seen in times.items():
        print(f"ls {way:<11} best {min(seen) * 1000:7.1f} ms   median "
              f"{statistics.median(seen) * 1000:7.1f} ms   ({runs} runs)")


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 10)
