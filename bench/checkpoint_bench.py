"""End-to-end checkpoint benchmark: plain CRIU (+ ``aws s3 sync``) against ``cryostash``.

Usage (from the repository root, as root, after ``make criu``)::

    .venv/bin/python bench/checkpoint_bench.py          # or: make bench
    .venv/bin/python bench/checkpoint_bench.py --size-mib 128 --repeat 1   # quicker

One run, on a process holding ``--size-mib`` (512) MiB resident, half random bytes and
half zeros (``tests/support/memory_prog.py``; it rewrites 5% of its memory, one region,
on SIGUSR1), measures (wall time of each command, best of ``--repeat``):

a. ``criu dump`` into a local folder vs ``cryostash create`` into a local store;
b. ``criu dump`` + ``aws s3 sync`` to a moto server on loopback vs ``cryostash create``
   to the same server;
c. after the process rewrote 5% of its memory, the second checkpoint's bytes uploaded as
   a share of the first's;
d. the first checkpoint's stored bytes as a share of the raw image folder;
e. ``criu restore`` from a local folder vs ``cryostash restore`` from the local store
   (``--cache none`` and default; a local store is never cached), and from S3 with an
   empty and with a warm chunk cache;
f. ``cryostash --help`` and ``cryostash ls`` start-up time;
g. ``criu dump`` + ``sync`` of its image files (a durable dump) vs ``cryostash create``
   into a local store (which makes what it stores durable);
h. CRIU's frozen time inside ``cryostash create`` vs plain ``criu dump`` of the same
   process (best of each; freezing times beside);
i. start-up of the read verbs on a SQLite catalog grown to 10,000 and to 100,000
   checkpoints (``bench/catalog_fill.py``, copies of the first real checkpoint): ``ls``,
   ``inspect``, ``events``, ``--help`` at 10,000 and ``ls`` at 100,000.
j. an encrypted store (``store init --encrypt``) against the plain one, same process,
   same run: ``create`` and ``restore`` (local store) times and the stored bytes.

It prints a table with the ratios and the goals, writes everything as JSON to
``bench/results/checkpoint-<time>.json`` (git-ignored), and stops every process and
server it started (by PID), whatever happens. CRIU runs with cryostash's own options
(``-o dump.log -v4 --leave-running``). cryostash's scratch is on disk, in the work
folder beside CRIU's image folders (as cryostash's default scratch is on disk);
``--scratch-on-tmpfs`` puts it on ``/dev/shm`` to compare (slower here: CRIU writes and
the clean-up frees shmem pages more slowly than page-cache ones). Stores are on disk.
cryostash runs from byte-code compiled once, as an installed package does (a private
``PYTHONPYCACHEPREFIX`` in the work folder, written by a first untimed run even when
``PYTHONDONTWRITEBYTECODE`` is set; ``--no-bytecode`` to compile at every run). The JSON
also has where the time of a create and a restore goes outside the data path
(``*_outside_s``: interpreter start-up, imports, catalog, event, scratch removal).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from contextlib import ExitStack
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT), str(ROOT / "bench")]
from catalog_fill import copy_catalog, fill_catalog  # noqa: E402
from s3_throughput import aws_cli, aws_env, moto_server  # noqa: E402
from tests.support.processes import kill_pid, start_detached, wait_until  # noqa: E402

from cryostash.engines.criu_images import read_dump_stats  # noqa: E402

MEMORY_PROG = ROOT / "tests" / "support" / "memory_prog.py"
CLI = [sys.executable, "-m", "cryostash"]
#: Rows whose figure is seconds, not a ratio.
SECONDS = frozenset({"f", "i", "i100k"})
GOALS = {"a": 1.4, "b": 0.6, "c": 0.10, "d": 0.55, "e": 1.5, "f": 0.3, "g": 1.0, "h": 1.05,
         "i": 0.2, "i100k": 0.5, "j_create": 1.10, "j_restore": 1.10, "j_stored": 1.01}
PASSPHRASE = "bench passphrase"


def timed(cmd: list[str], env: dict[str, str] | None = None) -> tuple[float, str]:
    """Run ``cmd``; return (wall seconds, stdout). Raises with stderr on failure."""
    started = time.perf_counter()
    done = subprocess.run(cmd, capture_output=True, text=True, env=env, check=False)
    elapsed = time.perf_counter() - started
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} exited {done.returncode}:\n{done.stderr[-3000:]}")
    return elapsed, done.stdout


def folder_bytes(folder: Path) -> int:
    return sum(p.stat().st_size for p in folder.rglob("*") if p.is_file())


class Bench:
    """State of one run: folders, the process, the environment of cryostash."""

    def __init__(self, args: argparse.Namespace, work: Path, scratch: Path) -> None:
        self.args, self.work, self.scratch = args, work, scratch
        self.criu = args.criu or self._criu()
        self.pids: list[int] = []
        self.results: dict[str, Any] = {"size_mib": args.size_mib, "repeat": args.repeat}
        self.status = work / "status"
        self.pid = 0

    @staticmethod
    def _criu() -> str:
        from cryostash.engines.criu import CriuEngine

        found = CriuEngine().available()
        if not found.ok or not found.path:
            sys.exit(f"no usable CRIU: {found.reason} (run: make criu)")
        return found.path

    def env(self, tag: str, **extra: str) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith(("CRYOSTASH_", "AWS_"))}
        env.update(
            CRYOSTASH_STORE=str(self.work / f"store-{tag}"),
            CRYOSTASH_CATALOG=f"sqlite:///{self.work / f'catalog-{tag}.db'}",
            CRYOSTASH_SCRATCH=str(self.scratch),
            CRYOSTASH_CACHE=str(self.work / f"cache-{tag}"),
            CRYOSTASH_CRIU=self.criu,
            CRYOSTASH_CONFIG=os.devnull,
        )
        if not self.args.no_bytecode:  # as installed: compiled once, then read
            env.pop("PYTHONDONTWRITEBYTECODE", None)
            env["PYTHONPYCACHEPREFIX"] = str(self.work / "pycache")
        env.update(extra)
        return env

    def enc_env(self, i: int) -> dict[str, str]:
        """The environment of encrypted store ``i`` (its own store, catalog and cache)."""
        return self.env(f"enc{i}", CRYOSTASH_STORE=str(self.work / f"enc{i}"),
                        CRYOSTASH_PASSWORD=PASSPHRASE)

    def warm_up(self) -> None:
        """Compile (untimed) what the measured commands import, into the private prefix."""
        env = self.env("warm")
        code = ("import cryostash.cli.app, cryostash.repository, cryostash.transfer, "
                "cryostash.engines.criu, cryostash.objects.s3")
        timed([sys.executable, "-c", code], env)
        timed([*CLI, "ls"], env)

    # -- the process -----------------------------------------------------------------

    def start(self) -> None:
        self.status.unlink(missing_ok=True)
        proc = start_detached(
            [sys.executable, str(MEMORY_PROG), str(self.args.size_mib), str(self.status)],
            self.work, "memory",
        )
        self.pid = proc.pid
        self.pids.append(proc.pid)
        self.wait_status("0")

    def wait_status(self, value: str) -> None:
        def ready() -> bool:
            return self.status.exists() and self.status.read_text() == value

        wait_until(ready, 300, f"memory process status {value}")

    def stop(self, pid: int) -> None:
        kill_pid(pid, timeout=30)

    # -- steps -------------------------------------------------------------------------

    def criu_dump(self, folder: Path) -> float:
        folder.mkdir(parents=True)
        cmd = [self.criu, "dump", "-t", str(self.pid), "-D", str(folder), "-o", "dump.log",
               "-v4", "--leave-running"]
        took = timed(cmd)[0]
        self.results.setdefault("h_criu_engine", []).append(read_dump_stats(folder))
        return took

    def criu_dump_sync(self, folder: Path) -> float:
        """A durable plain dump: ``criu dump`` then ``sync`` of every file it wrote."""
        took = self.criu_dump(folder)
        files = [str(p) for p in folder.rglob("*") if p.is_file()]
        return took + timed(["sync", *files])[0]

    def create(self, env: dict[str, str], name: str) -> tuple[float, dict[str, Any]]:
        cmd = [*CLI, "create", "mem", name, "--pid", str(self.pid), "--leave-running", "--json"]
        elapsed, out = timed(cmd, env)
        return elapsed, json.loads(out)["stats"]

    def restore(self, cmd: list[str], env: dict[str, str] | None, pidfile: Path | None) -> float:
        wait_until(lambda: not Path(f"/proc/{self.pid}").exists(), 30, "PID to be free")
        if pidfile:
            pidfile.unlink(missing_ok=True)  # criu refuses to overwrite it
        elapsed, out = timed(cmd, env)
        if not pidfile:
            stats = json.loads(out)
            self.results.setdefault("restore_stats", []).append(stats)
            self.results.setdefault("e_restore_outside_s", []).append(
                round(elapsed - stats["total_s"], 3)
            )
        pid = int(pidfile.read_text()) if pidfile else json.loads(out)["pid"]
        self.pids.append(pid)
        self.stop(pid)
        return elapsed

    def best(self, fn: Callable[[int], float]) -> float:
        return min(fn(i) for i in range(self.args.repeat))

    def run(self, endpoint: str, aws: list[str]) -> None:
        r, w = self.results, self.work
        self.warm_up()
        self.start()
        r["a_criu_dump_s"] = self.best(lambda i: self.criu_dump(w / f"criu-a{i}"))
        r["g_criu_dump_sync_s"] = self.best(lambda i: self.criu_dump_sync(w / f"criu-g{i}"))
        creates = [self.create(self.env(f"a{i}"), "one") for i in range(self.args.repeat)]
        r["a_cryostash_create_s"] = min(t for t, _ in creates)
        first = creates[0][1]
        r["h_create_engine"] = [s["engine"] for _, s in creates]
        r["first_stats"] = first
        r["a_create_outside_s"] = [
            round(t - s["total_s"] - s.get("commit_s", 0.0), 3) for t, s in creates
        ]
        r["image_bytes"] = folder_bytes(w / "criu-a0")
        r["d_store_bytes"] = folder_bytes(w / "store-a0" / "blobs")
        # g: the same first checkpoint into encrypted stores (scrypt's unlock included).
        for i in range(self.args.repeat):
            timed([*CLI, "store", "init", "--encrypt"], self.enc_env(i))
        r["g_encrypted_create_s"] = self.best(lambda i: self.create(self.enc_env(i), "one")[0])
        r["g_store_bytes"] = folder_bytes(w / "enc0" / "blobs")
        # b: S3
        senv = aws_env(endpoint)

        def criu_and_sync(i: int) -> float:
            took = self.criu_dump(w / f"criu-b{i}")
            target = f"s3://base-{i}-{int(time.time())}/img"
            timed([*aws, "s3", "mb", target.rsplit("/", 1)[0]], senv)
            return took + timed([*aws, "s3", "sync", str(w / f"criu-b{i}"), target], senv)[0]

        r["b_criu_sync_s"] = self.best(criu_and_sync)

        def s3_create(i: int) -> float:
            bucket = f"cs-{i}-{int(time.time())}"
            timed([*aws, "s3", "mb", f"s3://{bucket}"], senv)
            env = self.env(f"s3{i}", CRYOSTASH_STORE=f"s3://{bucket}/cs",
                           **{k: v for k, v in senv.items() if k.startswith("AWS_")})
            took, stats = self.create(env, "one")
            r.setdefault("s3_envs", []).append(bucket)
            r.setdefault("s3_stats", []).append(stats)
            return took

        r["b_cryostash_create_s"] = self.best(s3_create)
        # c: the process rewrites 5% of its memory; second checkpoint into store a0.
        os.kill(self.pid, signal.SIGUSR1)
        self.wait_status("1")
        r["c_second_create_s"], second = self.create(self.env("a0"), "two")
        r["second_stats"] = second
        # e: restores (the memory process must be gone: CRIU restores its PID).
        self.stop(self.pid)
        r["e_criu_restore_s"] = self.best(lambda i: self.restore(
            [self.criu, "restore", "-D", str(w / "criu-a0"), "-d", "--pidfile",
             str(w / "criu.pid"), "-o", "restore.log", "-v4"], None, w / "criu.pid"))
        rcmd = [*CLI, "restore", "mem", "two", "--json"]
        r["e_cryostash_restore_nocache_s"] = self.best(
            lambda i: self.restore(rcmd, self.env("a0", CRYOSTASH_CACHE="none"), None))
        r["e_cryostash_restore_s"] = self.best(lambda i: self.restore(rcmd, self.env("a0"), None))
        bucket = r["s3_envs"][0]
        s3env = self.env("s30", CRYOSTASH_STORE=f"s3://{bucket}/cs",
                         **{k: v for k, v in senv.items() if k.startswith("AWS_")})
        one = [*CLI, "restore", "mem", "one", "--json"]

        def cold(i: int) -> float:
            return self.restore(one, {**s3env, "CRYOSTASH_CACHE": str(w / f"cold-{i}")}, None)

        r["e_s3_restore_cold_cache_s"] = self.best(cold)
        r["e_s3_restore_warm_cache_s"] = self.best(lambda i: self.restore(one, s3env, None))
        # g: restore of the same checkpoint, plain and encrypted, alternating.
        plain_one = [*CLI, "restore", "mem", "one", "--json"]
        times: dict[str, list[float]] = {"plain": [], "enc": []}
        for i in range(self.args.repeat):
            times["plain"].append(self.restore(plain_one, self.env(f"a{i}"), None))
            times["enc"].append(self.restore(plain_one, self.enc_env(i), None))
        r["g_plain_restore_s"], r["g_encrypted_restore_s"] = min(times["plain"]), min(times["enc"])
        # f: start-up
        env = self.env("a0")
        r["f_help_s"] = min(timed([*CLI, "--help"], env)[0] for _ in range(5))
        r["f_ls_s"] = min(timed([*CLI, "ls"], env)[0] for _ in range(5))
        self.startup(env)

    def startup(self, env: dict[str, str]) -> None:
        """i: the read verbs on catalogs of 10,000 and 100,000 checkpoints (copies of
        catalog a0 grown with copies of its first checkpoint; its two real ones stay)."""
        r, w = self.results, self.work

        def best(cmd: list[str], catalog: Path) -> float:
            run_env = {**env, "CRYOSTASH_CATALOG": f"sqlite:///{catalog}"}
            timed(cmd, run_env)  # warm: the catalog's pages in the page cache
            return min(timed(cmd, run_env)[0] for _ in range(5))

        for count, verbs in ((10_000, ("ls", "inspect", "events", "help")), (100_000, ("ls",))):
            catalog = w / f"catalog-{count}.db"
            copy_catalog(w / "catalog-a0.db", catalog)
            fill_catalog(str(catalog), count)
            commands = {"ls": ["ls"], "inspect": ["inspect", "mem", "two"],
                        "events": ["events"], "help": ["--help"]}
            for verb in verbs:
                r[f"i_{verb}_{count}_s"] = best([*CLI, *commands[verb]], catalog)

    def kill_everything(self) -> None:
        for pid in self.pids:
            try:
                cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
            except OSError:
                continue
            if str(MEMORY_PROG).encode() in cmdline:
                self.stop(pid)


def table(r: dict[str, Any]) -> tuple[list[str], dict[str, float]]:
    first, second = r["first_stats"], r["second_stats"]
    plain = min(r["h_criu_engine"], key=lambda e: e.get("frozen_time_us", 1 << 62))
    plain_frozen = plain["frozen_time_us"]
    in_create = min(r["h_create_engine"], key=lambda e: e.get("frozen_time_us", 1 << 62))
    ratios = {
        "a": r["a_cryostash_create_s"] / r["a_criu_dump_s"],
        "b": r["b_cryostash_create_s"] / r["b_criu_sync_s"],
        "c": second["bytes_uploaded"] / first["bytes_uploaded"],
        "d": r["d_store_bytes"] / r["image_bytes"],
        "e": r["e_cryostash_restore_s"] / r["e_criu_restore_s"],
        "f": r["f_help_s"],
        "g": r["a_cryostash_create_s"] / r["g_criu_dump_sync_s"],
        "h": in_create["frozen_time_us"] / plain_frozen,
        "i": r["i_ls_10000_s"],
        "i100k": r["i_ls_100000_s"],
        "j_create": r["g_encrypted_create_s"] / r["a_cryostash_create_s"],
        "j_restore": r["g_encrypted_restore_s"] / r["g_plain_restore_s"],
        "j_stored": r["g_store_bytes"] / r["d_store_bytes"],
    }
    rows = [
        ("a", "criu dump -> local folder", f"{r['a_criu_dump_s']:.2f} s",
         "cryostash create -> local store", f"{r['a_cryostash_create_s']:.2f} s"),
        ("b", "criu dump + aws s3 sync", f"{r['b_criu_sync_s']:.2f} s",
         "cryostash create -> S3", f"{r['b_cryostash_create_s']:.2f} s"),
        ("c", "1st checkpoint uploaded", f"{first['bytes_uploaded'] / 1e6:.1f} MB",
         "2nd (5% rewritten) uploaded", f"{second['bytes_uploaded'] / 1e6:.1f} MB"),
        ("d", "raw image folder", f"{r['image_bytes'] / 1e6:.1f} MB",
         "stored (1st checkpoint)", f"{r['d_store_bytes'] / 1e6:.1f} MB"),
        ("e", "criu restore <- local folder", f"{r['e_criu_restore_s']:.2f} s",
         "cryostash restore <- local store", f"{r['e_cryostash_restore_s']:.2f} s"),
        ("f", "cryostash --help", f"{r['f_help_s']:.3f} s",
         "cryostash ls", f"{r['f_ls_s']:.3f} s"),
        ("g", "criu dump + sync (durable)", f"{r['g_criu_dump_sync_s']:.2f} s",
         "cryostash create -> local store", f"{r['a_cryostash_create_s']:.2f} s"),
        ("h", "plain criu dump: frozen", f"{plain_frozen / 1e6:.3f} s",
         "CRIU in cryostash create: frozen", f"{in_create['frozen_time_us'] / 1e6:.3f} s"),
        ("i", "", "", "ls, 10,000 checkpoints", f"{r['i_ls_10000_s']:.3f} s"),
        ("i100k", "", "", "ls, 100,000 checkpoints", f"{r['i_ls_100000_s']:.3f} s"),
        ("j_create", "create -> plain local store", f"{r['a_cryostash_create_s']:.2f} s",
         "create -> encrypted store", f"{r['g_encrypted_create_s']:.2f} s"),
        ("j_restore", "restore <- plain local store", f"{r['g_plain_restore_s']:.2f} s",
         "restore <- encrypted store", f"{r['g_encrypted_restore_s']:.2f} s"),
        ("j_stored", "stored, plain", f"{r['d_store_bytes'] / 1e6:.1f} MB",
         "stored, encrypted", f"{r['g_store_bytes'] / 1e6:.1f} MB"),
    ]
    lines = [f"{'':6}{'baseline':<26}{'':>10}  {'cryostash':<33}{'':>10}  {'ratio':>7}  goal"]
    for key, base, bval, mine, mval in rows:
        ok = "met" if ratios[key] <= GOALS[key] else "MISSED"
        shown = f"{ratios[key]:.3f}" if key not in SECONDS else f"{ratios[key]:.3f}s"
        lines.append(f"{key:<5} {base:<26}{bval:>10}  {mine:<33}{mval:>10}  {shown:>7}  "
                     f"<= {GOALS[key]} {ok}")
    lines += [
        f"  e: cryostash restore <- local store, --cache none: "
        f"{r['e_cryostash_restore_nocache_s']:.2f} s",
        f"  e: cryostash restore <- S3, empty cache: {r['e_s3_restore_cold_cache_s']:.2f} s; "
        f"warm cache: {r['e_s3_restore_warm_cache_s']:.2f} s",
        f"  c: 2nd uploaded / 1st image size: {second['bytes_uploaded'] / r['image_bytes']:.3f}; "
        f"2nd bytes new {second['bytes_new'] / 1e6:.1f} MB",
        f"  a: first create: frozen {first['frozen_s']} s, dump {first['dump_s']:.2f} s, "
        f"upload {first['upload_s']:.2f} s, total in manager {first['total_s']:.2f} s, "
        f"outside (start-up, catalog, clean-up) {r['a_create_outside_s'][0]:.2f} s",
        f"  h: freezing (CRIU's time to freeze the tree): plain {plain['freezing_time_us']} us, "
        f"in create {in_create['freezing_time_us']} us; frozen: plain {plain_frozen} us, in "
        f"create {in_create['frozen_time_us']} us (every plain dump: "
        f"{[e.get('frozen_time_us') for e in r['h_criu_engine']]}, every create: "
        f"{[e.get('frozen_time_us') for e in r['h_create_engine']]})",
        f"  i: 10,000 checkpoints: inspect {r['i_inspect_10000_s']:.3f} s, events (all "
        f"10,000) {r['i_events_10000_s']:.3f} s, --help {r['i_help_10000_s']:.3f} s "
        f"(goal <= {GOALS['i']} s each)",
        f"  load average at the start: {r.get('load_average')}, at the end: "
        f"{r.get('load_average_end')}",
    ]
    for stats in r.get("restore_stats", []):
        lines.append(
            f"  e: restore: download {stats['download_s']:.2f} s, criu {stats['restore_s']:.2f} s"
            f", in manager {stats['total_s']:.2f} s; from cache {stats['chunks_from_cache']}, "
            f"downloaded {stats['chunks_downloaded']} chunks"
        )
    lines.append(f"  e: restore outside the manager: {r.get('e_restore_outside_s')} s")
    return lines, ratios


def save_results(results: dict[str, Any], kind: str) -> Path:
    """Write ``results`` as ``bench/results/KIND-<time>.json`` (git-ignored); its path."""
    out = ROOT / "bench" / "results"
    out.mkdir(exist_ok=True)
    path = out / f"{kind}-{time.strftime('%Y%m%d-%H%M%S')}.json"
    path.write_text(json.dumps(results, indent=2, default=str) + "\n")
    return path


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--size-mib", type=int, default=512)
    parser.add_argument("--repeat", type=int, default=2, help="best of N per measure")
    parser.add_argument("--criu", help="CRIU binary (default: the one cryostash finds)")
    parser.add_argument("--aws", help="AWS CLI (default: $AWS_CLI or bench/.awscli-venv)")
    parser.add_argument("--scratch-on-tmpfs", action="store_true",
                        help="cryostash's scratch on /dev/shm instead of the disk")
    parser.add_argument("--no-bytecode", action="store_true",
                        help="no private byte-code cache: obey PYTHONDONTWRITEBYTECODE")
    parser.add_argument("--keep", action="store_true", help="keep the work folder")
    args = parser.parse_args(argv)
    if os.geteuid() != 0:
        sys.exit("CRIU needs root")
    base = Path("/var/tmp")
    work = Path(tempfile.mkdtemp(prefix="cryostash-bench-", dir=base))
    shm = Path("/dev/shm")
    on_tmpfs = shm.is_dir() and args.scratch_on_tmpfs
    scratch = Path(tempfile.mkdtemp(prefix="cryostash-bench-", dir=shm if on_tmpfs else work))
    bench = Bench(args, work, scratch)
    bench.results["scratch"] = "tmpfs" if on_tmpfs else "disk"
    bench.results["bytecode"] = "as installed" if not args.no_bytecode else "environment"
    bench.results["load_average"] = [round(x, 2) for x in os.getloadavg()]
    with ExitStack() as stack:
        stack.callback(lambda: None if args.keep else shutil.rmtree(work, ignore_errors=True))
        stack.callback(lambda: shutil.rmtree(scratch, ignore_errors=True))
        stack.callback(bench.kill_everything)
        endpoint = stack.enter_context(moto_server())
        aws = aws_cli(args.aws)
        bench.run(endpoint, aws)
    bench.results["load_average_end"] = [round(x, 2) for x in os.getloadavg()]
    lines, ratios = table(bench.results)
    bench.results["ratios"] = ratios
    bench.results["goals"] = GOALS
    print("\n".join(lines))
    print(f"results: {save_results(bench.results, 'checkpoint')}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
