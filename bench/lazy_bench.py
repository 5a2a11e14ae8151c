"""Lazy restore benchmark: ``cryostash restore --lazy`` against plain ``criu restore``.

Usage (from the repository root, as root, after ``make criu``)::

    .venv/bin/python bench/lazy_bench.py                       # 512 MiB, best of 3
    .venv/bin/python bench/lazy_bench.py --size-mib 128 --repeat 1

One run, on a process holding ``--size-mib`` MiB, half pseudo-random bytes and half
zeros (``tests/support/pattern_prog.py``), after a warm-up dump: ``criu dump
--leave-running`` into a folder, then ``cryostash create`` into a local store and into
S3 (a private moto server on loopback). Then, best of ``--repeat``, each restore followed
by a kill of the restored process (by PID):

- ``criu restore -D FOLDER -d`` (wall time): the reference;
- ``cryostash restore --lazy`` from the local store: wall time of the command (until
  the process runs) and, from its completion event, time until every page is in;
- ``cryostash restore`` (full) from the local store: wall time;
- ``cryostash restore --lazy`` from S3 with an empty chunk cache: wall time;
- live migration on loopback of a fresh ``--size-mib`` process to a second "host" (a
  command destination with its own host name, chunk cache and scratch, same S3 store
  (moto) and catalog), one pre-copy with prefetch: the downtime of ``cryostash migrate`` (the
  baseline) and of ``cryostash migrate --lazy``, with their parts (``--no-migrate``
  leaves these out).

Prints the table with the ratios and the goals of issue 11 and writes the figures to
``bench/results/lazy-<time>.json`` (git-ignored). Every process and server it started is
stopped by PID.
"""

from __future__ import annotations

import argparse
import contextlib
import ctypes
import json
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT), str(ROOT / "bench")]
from s3_throughput import aws_env, moto_server  # noqa: E402
from tests.support.processes import kill_pid, start_detached, wait_until  # noqa: E402

PATTERN_PROG = ROOT / "tests" / "support" / "pattern_prog.py"
CLI = [sys.executable, "-m", "cryostash"]
GOALS = {"lazy_local": 0.5, "lazy_s3": 1.0, "complete_local": 1.0, "full_local": 1.5}
#: Downtime of ``migrate --lazy`` (seconds, absolute).
MIGRATE_GOAL_S = 0.350
PARTS = ("dump_s", "upload_s", "commit_s", "handoff_s", "download_s", "pid_wait_s", "restore_s")


def timed(cmd: list[str], env: dict[str, str] | None = None) -> tuple[float, str]:
    """Run ``cmd``; (wall seconds, stdout). Raises with stderr on failure."""
    started = time.perf_counter()
    done = subprocess.run(cmd, capture_output=True, text=True, env=env, check=False)
    elapsed = time.perf_counter() - started
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} exited {done.returncode}:\n{done.stderr[-3000:]}")
    return elapsed, done.stdout


def cryostash_env(work: Path, tag: str, criu: str, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("CRYOSTASH_", "AWS_"))}
    env.update(
        CRYOSTASH_STORE=str(work / f"store-{tag}"),
        CRYOSTASH_CATALOG=f"sqlite:///{work / f'catalog-{tag}.db'}",
        CRYOSTASH_SCRATCH=str(work / "scratch"),
        CRYOSTASH_CACHE=str(work / f"cache-{tag}"),
        CRYOSTASH_CRIU=criu,
        CRYOSTASH_CONFIG=os.devnull,
        PYTHONPYCACHEPREFIX=str(work / "pycache"),
    )
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    env.update(extra)
    return env


def completion(env: dict[str, str], seen: int) -> dict[str, Any]:
    """The detail of the lazy restore event after the first ``seen`` events."""
    def done() -> dict[str, Any] | None:
        events = json.loads(timed([*CLI, "events", "--json"], env)[1])[seen:]
        for event in events:
            if event["action"].startswith("restore") and event["detail"].get("lazy"):
                if event["action"] != "restore":
                    raise RuntimeError(f"lazy restore failed: {event['detail']}")
                return dict(event["detail"])
        return None

    return wait_until(done, 600, "the lazy restore to complete", interval=0.2)


def count_events(env: dict[str, str]) -> int:
    return len(json.loads(timed([*CLI, "events", "--json"], env)[1]))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--size-mib", type=int, default=512)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--criu", default=None)
    parser.add_argument("--no-migrate", action="store_true", help="skip the migration rows")
    args = parser.parse_args()
    from cryostash.engines.criu import CriuEngine

    criu = args.criu or CriuEngine().available().path
    if not criu:
        sys.exit("no usable CRIU (run: make criu)")
    work = Path(tempfile.mkdtemp(prefix="cryostash-lazy-bench-"))
    pid = 0
    results: dict[str, Any] = {"size_mib": args.size_mib, "repeat": args.repeat}
    try:
        with moto_server() as endpoint:
            import boto3

            bucket = f"lazy-{int(time.time())}"
            boto3.client("s3", endpoint_url=endpoint, aws_access_key_id="k",
                         aws_secret_access_key="s", region_name="us-east-1").create_bucket(
                Bucket=bucket)
            local = cryostash_env(work, "local", criu)
            s3 = cryostash_env(work, "s3", criu, CRYOSTASH_STORE=f"s3://{bucket}/cs",
                               **{k: v for k, v in aws_env(endpoint).items()
                                  if k.startswith("AWS_")})
            status = work / "status"
            proc = start_detached([sys.executable, str(PATTERN_PROG), str(args.size_mib), "5",
                                   str(status)], work, "pattern")
            pid = proc.pid
            wait_until(lambda: status.exists(), 300, "the pattern in memory")
            dump = [criu, "dump", "-t", str(pid), "-o", "dump.log", "-v4", "--leave-running"]
            timed([*dump, "-D", str(_fresh(work / "warmup"))])
            timed([*dump, "-D", str(_fresh(work / "plain"))])
            timed([*CLI, "create", "pat", "one", "--pid", str(pid), "--leave-running"], s3)
            timed([*CLI, "create", "pat", "one", "--pid", str(pid)], local)
            kill_pid(pid, 30)

            def best(run: Any) -> list[float]:
                return [run() for _ in range(args.repeat)]

            def plain() -> float:
                took, _ = timed([criu, "restore", "-D", str(work / "plain"), "-d",
                                 "-o", "restore.log", "-v4"])
                kill_pid(pid, 30)
                return took

            complete: list[float] = []
            inside: list[float] = []

            def lazy(env: dict[str, str], cache: Path | None) -> float:
                if cache is not None:
                    shutil.rmtree(cache, ignore_errors=True)
                seen = count_events(env)
                took, out = timed([*CLI, "restore", "pat", "one", "--lazy", "--json"], env)
                detail = completion(env, seen)
                if cache is None:
                    complete.append(took - json.loads(out)["time_to_running_s"]
                                    + detail["time_to_complete_s"])
                    inside.append(detail["time_to_running_s"])
                kill_pid(pid, 30)
                return took

            def full() -> float:
                took, _ = timed([*CLI, "restore", "pat", "one"], local)
                kill_pid(pid, 30)
                return took

            results["plain_s"] = best(plain)
            results["lazy_local_s"] = best(lambda: lazy(local, None))
            results["lazy_local_complete_s"] = complete
            results["lazy_local_inside_s"] = inside
            results["full_local_s"] = best(full)
            results["lazy_s3_s"] = best(lambda: lazy(s3, work / "cache-s3"))
            if not args.no_migrate:
                adopt_orphans()
                for flag in ("", "--lazy"):
                    key = "migrate_lazy" if flag else "migrate"
                    results[key] = best(lambda f=flag: migration(work, s3, args.size_mib, f))
    finally:
        if pid:
            kill_pid(pid, 30)
        shutil.rmtree(work, ignore_errors=True)
    report(results)


def adopt_orphans() -> None:
    """Make this process the reaper of its orphaned descendants (``PR_SET_CHILD_SUBREAPER``).

    The migrated process is dumped at the source and restored with the same PID on the
    same machine: its PID must be free first, i.e. the dumped process reaped. A real
    destination is another machine; here, init may reap orphans only every few seconds,
    which would put that wait (``pid_wait_s``) into the downtime. So the bench adopts its
    orphans and reaps each one it watches (:func:`reap`) the moment it exits."""
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(36, 1, 0, 0, 0) != 0:
        raise OSError(ctypes.get_errno(), "prctl(PR_SET_CHILD_SUBREAPER)")


def reap(pid: int) -> None:
    """Reap ``pid`` (a child, or an adopted orphan) in a thread as soon as it exits."""

    def wait() -> None:
        with contextlib.suppress(ChildProcessError):
            os.waitpid(pid, 0)

    threading.Thread(target=wait, daemon=True).start()


def migration(work: Path, env: dict[str, str], size_mib: int, flag: str) -> dict[str, Any]:
    """Migrate a fresh pattern process to host-b (pre-copy 1, prefetch); its report's
    downtime and parts. With ``--lazy``, waits for the completion event too. The process
    (and the lazy helper) are adopted and reaped (:func:`adopt_orphans`); the process is
    killed by PID at the end."""
    status = work / "mstatus"
    status.unlink(missing_ok=True)
    proc = start_detached([sys.executable, str(PATTERN_PROG), str(size_mib), "7", str(status)],
                          work, "mpattern")
    pid = proc.pid
    reap(pid)
    try:
        wait_until(lambda: status.exists(), 300, "the pattern in memory")
        dest_env = (f"env CRYOSTASH_HOST=host-b CRYOSTASH_CACHE={work / 'cache-b'} "
                    f"CRYOSTASH_SCRATCH={work / 'scratch-b'} {sys.executable} -m cryostash")
        seen = count_events(env)
        name = f"m{int(time.time() * 1000)}"
        _took, out = timed([*CLI, "migrate", "pat", "--pid", str(pid), "--name", name,
                            "--precopy", "1", "--to", dest_env, "--json",
                            *([flag] if flag else [])], env)
        report = json.loads(out)
        reap(pid)  # the restored process, same PID, adopted once its CRIU exited
        if flag:
            reap(int(report["final"]["helper_pid"]))
            completion(env, seen)
        final = report["final"]
        return {"downtime_s": report["downtime_s"], **{k: final.get(k) for k in PARTS},
                "bytes_uploaded": final.get("bytes_uploaded")}
    finally:
        kill_pid(pid, 30)


def _fresh(folder: Path) -> Path:
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    return folder


def report(results: dict[str, Any]) -> None:
    plain, full = min(results["plain_s"]), min(results["full_local_s"])
    rows = [
        ("time-to-running, lazy local / criu restore", "lazy_local",
         min(results["lazy_local_s"]), plain),
        ("time-to-running, lazy S3 empty cache / criu restore", "lazy_s3",
         min(results["lazy_s3_s"]), plain),
        ("time-to-complete, lazy local / full local restore", "complete_local",
         min(results["lazy_local_complete_s"]), full),
        ("full restore, local / criu restore", "full_local", full, plain),
    ]
    print(f"{results['size_mib']} MiB, best of {results['repeat']}; criu restore {plain:.3f} s")
    print(f"{'measure':<55}{'s':>8}{'ratio':>8}{'goal':>7}  met")
    for label, key, value, base in rows:
        ratio = value / base
        met = "yes" if ratio <= GOALS[key] else "no"
        print(f"{label:<55}{value:>8.3f}{ratio:>8.2f}{GOALS[key]:>7.2f}  {met}")
        results[f"ratio_{key}"] = round(ratio, 3)
    if "migrate" in results:
        base = min(results["migrate"], key=lambda r: r["downtime_s"])
        fast = min(results["migrate_lazy"], key=lambda r: r["downtime_s"])
        met = "yes" if fast["downtime_s"] <= MIGRATE_GOAL_S else "no"
        print(f"{'migrate --lazy downtime / migrate downtime':<55}{fast['downtime_s']:>8.3f}"
              f"{fast['downtime_s'] / base['downtime_s']:>8.2f}{MIGRATE_GOAL_S:>6.3f}s  {met}")
        for label, row in (("migrate", base), ("migrate --lazy", fast)):
            parts = ", ".join(f"{k[:-2]} {row[k]:.3f}" for k in PARTS if row.get(k) is not None)
            print(f"  {label}: downtime {row['downtime_s']:.3f} s = {parts}")
    inside = min(results["lazy_local_inside_s"])
    print(f"(inside the lazy command: running {inside:.3f} s after it began)")
    out = ROOT / "bench" / "results"
    out.mkdir(exist_ok=True)
    path = out / f"lazy-{time.strftime('%Y%m%d-%H%M%S')}.json"
    path.write_text(json.dumps(results, indent=2) + "\n")
    print(f"written: {path}")


if __name__ == "__main__":
    main()
