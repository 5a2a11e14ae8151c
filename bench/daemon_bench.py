"""The daemon's benchmark (issue 23): a checkpoint through ``cryostash daemon`` against
plain CRIU and against the cold command line, measured in the same run.

Usage (from the repository root, as root, after ``make criu``)::

    .venv/bin/python bench/daemon_bench.py                 # or: make bench-daemon
    .venv/bin/python bench/daemon_bench.py --sizes 8 --repeat 1 --load-ls 20   # quicker

For each ``--sizes`` process (8 and 64 MiB resident, half random bytes, half zeros:
``tests/support/memory_prog.py``), best of ``--repeat`` (3) of a create + restore pair
(``--leave-running`` dump of the live process, then the process is killed and restored
from that checkpoint; the restored process is the next pair's):

- baseline: ``criu dump`` + ``sync`` of its files + ``criu restore -d``;
- daemon: ``POST /v1/verbs/create`` + ``POST /v1/verbs/restore`` on the daemon's socket
  (a warm daemon: catalog, store and CRIU already used once);
- cold CLI: ``cryostash create`` + ``cryostash restore`` (each a new interpreter).

Then ``ls`` through the daemon (median of ``--ls-count`` sequential requests, ms), and
``--load-ls`` (100) ``ls`` requests sent at once while ``--load-creates`` (8) creates of 8
MiB processes run on the daemon (started with ``--workers`` = creates + 4): errors and the
p99 latency. Timings are wall time seen by the client (the bench process, whose client is
:mod:`cryostash.daemon.client`). It reuses ``bench/checkpoint_bench.py``'s process and
CRIU helpers, prints figures, ratios and goals, writes
``bench/results/daemon-<time>.json`` (git-ignored), and stops every process it started (by
PID), the daemon by SIGTERM.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from contextlib import ExitStack
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT), str(ROOT / "bench")]
from checkpoint_bench import CLI, MEMORY_PROG, Bench, save_results, timed  # noqa: E402
from tests.support.processes import kill_pid, start_detached, wait_until  # noqa: E402

from cryostash.daemon import client  # noqa: E402

#: Goals of issue 23 (ratios, and milliseconds for ls).
GOALS = {"daemon": 1.3, "cli": 3.0, "ls_ms": 30.0, "load_p99_ms": 100.0}


class DaemonBench(Bench):
    """:class:`checkpoint_bench.Bench` plus a daemon on a socket in the work folder."""

    def __init__(self, args: argparse.Namespace, work: Path, scratch: Path) -> None:
        super().__init__(args, work, scratch)
        self.results = {"sizes_mib": args.sizes, "repeat": args.repeat}
        self.socket = work / "run" / "cs.sock"
        self.daemon: subprocess.Popen[bytes] | None = None

    # -- the daemon ----------------------------------------------------------------------

    def start_daemon(self) -> None:
        log = (self.work / "daemon.log").open("wb")
        workers = str(self.args.load_creates + 4)
        self.daemon = subprocess.Popen(
            [*CLI, "daemon", "--socket", str(self.socket), "--workers", workers],
            env=self.env("daemon"), stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
            stderr=log,
        )
        log.close()

        def up() -> bool:
            assert self.daemon is not None and self.daemon.poll() is None, "daemon died"
            try:
                return client.request("GET", "/healthz", socket_path=self.socket)[0] == 200
            except Exception:
                return False

        wait_until(up, 60, "the daemon to answer")

    def stop_daemon(self) -> None:
        if self.daemon is not None and self.daemon.poll() is None:
            os.kill(self.daemon.pid, signal.SIGTERM)
            try:
                self.daemon.wait(120)
            except subprocess.TimeoutExpired:
                os.kill(self.daemon.pid, signal.SIGKILL)
                self.daemon.wait(30)

    def verb(self, verb: str, **fields: Any) -> Any:
        status, data = client.request("POST", f"/v1/verbs/{verb}", fields,
                                      socket_path=self.socket)
        if status != 200:
            raise RuntimeError(f"daemon {verb}: {status} {data}")
        return data

    # -- create + restore pairs ------------------------------------------------------------

    def _restored(self, pid: int) -> None:
        self.pid = pid
        self.pids.append(pid)

    def _free(self) -> None:
        self.stop(self.pid)
        wait_until(lambda: not Path(f"/proc/{self.pid}").exists(), 30, "PID to be free")

    def criu_pair(self, i: int, size: int) -> float:
        folder = self.work / f"criu-{size}-{i}"
        took = self.criu_dump_sync(folder)
        self._free()
        pidfile = self.work / "criu.pid"
        pidfile.unlink(missing_ok=True)
        took += timed([self.criu, "restore", "-D", str(folder), "-d", "--pidfile",
                       str(pidfile), "-o", "restore.log", "-v4"])[0]
        self._restored(int(pidfile.read_text()))
        return took

    def daemon_pair(self, i: int, size: int) -> float:
        name = f"d{size}-{i}"
        t0 = time.perf_counter()
        self.verb("create", target="mem", name=name, locator=str(self.pid),
                  leave_running=True)
        took = time.perf_counter() - t0
        self._free()
        t0 = time.perf_counter()
        restored = self.verb("restore", target="mem", name=name)
        took += time.perf_counter() - t0
        self._restored(int(restored["pid"]))
        return took

    def cli_pair(self, i: int, size: int) -> float:
        name = f"c{size}-{i}"
        env = self.env("cli")
        took = timed([*CLI, "create", "mem", name, "--pid", str(self.pid),
                      "--leave-running"], env)[0]
        self._free()
        elapsed, out = timed([*CLI, "restore", "mem", name, "--json"], env)
        self._restored(int(json.loads(out)["pid"]))
        return took + elapsed

    def pairs(self, size: int) -> None:
        self.args.size_mib = size
        self.start()
        r = self.results.setdefault(f"{size}mib", {})
        for kind, fn in (("criu", self.criu_pair), ("daemon", self.daemon_pair),
                         ("cli", self.cli_pair)):
            times = [fn(i, size) for i in range(self.args.repeat)]
            r[f"{kind}_s"] = min(times)
            r[f"{kind}_all_s"] = [round(t, 4) for t in times]
        self.stop(self.pid)

    # -- ls ----------------------------------------------------------------------------

    def ls_median(self) -> None:
        took = []
        for _ in range(self.args.ls_count):
            t0 = time.perf_counter()
            self.verb("ls")
            took.append((time.perf_counter() - t0) * 1000)
        self.results["ls_median_ms"] = statistics.median(took)
        self.results["ls_min_ms"] = min(took)

    def load(self) -> None:
        """``--load-ls`` concurrent ls while ``--load-creates`` creates run."""
        count = self.args.load_creates
        pids = []
        for n in range(count):
            status = self.work / f"load-{n}.status"
            proc = start_detached([sys.executable, str(MEMORY_PROG), "8", str(status)],
                                  self.work, f"load-{n}")
            self.pids.append(proc.pid)
            pids.append(proc.pid)
        for n in range(count):
            status = self.work / f"load-{n}.status"
            wait_until(lambda s=status: s.exists() and s.read_text() == "0", 120, "load proc")
        create_errors: list[str] = []

        def create(n: int) -> None:
            try:
                self.verb("create", target=f"load{n}", name="cp", locator=str(pids[n]),
                          leave_running=True)
            except Exception as exc:
                create_errors.append(str(exc))

        creates = [threading.Thread(target=create, args=(n,)) for n in range(count)]
        for thread in creates:
            thread.start()
        wait_until(lambda: client.status(self.socket)["in_flight"] >= 1, 60, "creates")
        latencies: list[float] = []
        errors: list[str] = []
        lock = threading.Lock()
        go = threading.Event()

        def ls() -> None:
            go.wait()
            t0 = time.perf_counter()
            try:
                self.verb("ls")
            except Exception as exc:
                with lock:
                    errors.append(str(exc))
                return
            with lock:
                latencies.append((time.perf_counter() - t0) * 1000)

        readers = [threading.Thread(target=ls) for _ in range(self.args.load_ls)]
        for thread in readers:
            thread.start()
        go.set()
        for thread in readers:
            thread.join()
        overlapped = client.status(self.socket)["in_flight"]
        for thread in creates:
            thread.join()
        for pid in pids:
            kill_pid(pid, timeout=30)
        ordered = sorted(latencies)
        p99 = ordered[max(0, round(0.99 * len(ordered)) - 1)] if ordered else float("nan")
        self.results["load"] = {
            "ls": self.args.load_ls, "creates": count, "ls_errors": len(errors),
            "create_errors": len(create_errors), "p99_ms": p99,
            "median_ms": statistics.median(ordered) if ordered else None,
            "creates_in_flight_after_ls": overlapped, "errors": (errors + create_errors)[:5],
        }

    def run_all(self) -> None:
        self.warm_up()
        self.start_daemon()
        self.verb("ls")  # open the catalog and the store once (a daemon that has served)
        timed([*CLI, "ls"], self.env("cli"))  # the cold CLI's catalog exists too
        for size in self.args.sizes:
            self.pairs(size)
        self.ls_median()
        self.load()


def report(r: dict[str, Any]) -> tuple[list[str], dict[str, float]]:
    lines = [f"{'':8}{'criu dump+sync+restore':>24}{'daemon':>12}{'ratio':>8}  goal"
             f"{'cold CLI':>14}{'ratio':>8}  goal"]
    ratios: dict[str, float] = {}
    for size in r["sizes_mib"]:
        s = r[f"{size}mib"]
        d, c = s["daemon_s"] / s["criu_s"], s["cli_s"] / s["criu_s"]
        ratios[f"daemon_{size}mib"], ratios[f"cli_{size}mib"] = d, c
        lines.append(
            f"{size:>4} MiB{s['criu_s']:>22.3f} s{s['daemon_s']:>10.3f} s{d:>8.2f}  "
            f"<= {GOALS['daemon']} {'met' if d <= GOALS['daemon'] else 'MISSED':<6}"
            f"{s['cli_s']:>8.3f} s{c:>8.2f}  <= {GOALS['cli']} "
            f"{'met' if c <= GOALS['cli'] else 'MISSED'}"
        )
    ls_ms, load = r["ls_median_ms"], r["load"]
    lines.append(f"ls via the daemon: median {ls_ms:.1f} ms (min {r['ls_min_ms']:.1f}), "
                 f"goal <= {GOALS['ls_ms']} ms {'met' if ls_ms <= GOALS['ls_ms'] else 'MISSED'}")
    ok = load["ls_errors"] == 0 and load["p99_ms"] <= GOALS["load_p99_ms"]
    lines.append(
        f"{load['ls']} concurrent ls while {load['creates']} creates run: {load['ls_errors']} "
        f"errors, p99 {load['p99_ms']:.1f} ms, median {load['median_ms']:.1f} ms "
        f"(creates failed: {load['create_errors']}; still in flight after the ls burst: "
        f"{load['creates_in_flight_after_ls']}), goal no error and p99 <= "
        f"{GOALS['load_p99_ms']} ms {'met' if ok else 'MISSED'}"
    )
    lines.append(f"load average at the start: {r.get('load_average')}, at the end: "
                 f"{r.get('load_average_end')}")
    ratios["ls_ms"], ratios["load_p99_ms"] = ls_ms, load["p99_ms"]
    return lines, ratios


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[8, 64], metavar="MIB")
    parser.add_argument("--repeat", type=int, default=3, help="best of N per pair")
    parser.add_argument("--ls-count", type=int, default=50)
    parser.add_argument("--load-ls", type=int, default=100)
    parser.add_argument("--load-creates", type=int, default=8)
    parser.add_argument("--criu", help="CRIU binary (default: the one cryostash finds)")
    parser.add_argument("--no-bytecode", action="store_true",
                        help="no private byte-code cache: obey PYTHONDONTWRITEBYTECODE")
    parser.add_argument("--keep", action="store_true", help="keep the work folder")
    args = parser.parse_args(argv)
    args.size_mib = args.sizes[0]
    if os.geteuid() != 0:
        sys.exit("CRIU needs root")
    work = Path(tempfile.mkdtemp(prefix="cryostash-daemon-bench-", dir="/var/tmp"))
    bench = DaemonBench(args, work, work / "scratch")
    bench.results["load_average"] = [round(x, 2) for x in os.getloadavg()]
    with ExitStack() as stack:
        stack.callback(lambda: None if args.keep else shutil.rmtree(work, ignore_errors=True))
        stack.callback(bench.kill_everything)
        stack.callback(bench.stop_daemon)
        bench.run_all()
    bench.results["load_average_end"] = [round(x, 2) for x in os.getloadavg()]
    lines, ratios = report(bench.results)
    bench.results["ratios"], bench.results["goals"] = ratios, GOALS
    print("\n".join(lines))
    print(f"results: {save_results(bench.results, 'daemon')}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
