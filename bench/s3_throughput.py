"""S3 throughput of cryostash against ``aws s3 sync``, same folder, same moto server.

Usage (from the repository root, with the project's venv)::

    .venv/bin/python bench/s3_throughput.py            # or: make bench-s3
    .venv/bin/python bench/s3_throughput.py --repeat 5 --jobs 8 --chunk-size 4M
    .venv/bin/python bench/s3_throughput.py --sweep    # try several jobs / chunk sizes

What it does, in one run:

1. Makes a realistic 512 MiB CRIU-like image folder: ``pages-1.img`` of about 511 MiB
   (half random bytes, half zeros, as CRIU writes them) and a dozen small files of
   various sizes, 64 B to 1 MiB (``core``, ``mm``, ``pagemap``, ``files``...).
2. Starts private moto S3 servers on 127.0.0.1 and free ports, a fresh one for each
   measured run (each stopped, by PID, when its run ends, whatever happens).
3. Provides the AWS CLI: ``--aws PATH`` or ``$AWS_CLI`` if given, else a separate venv
   (``~/.cache/cryostash/awscli-venv``, created once with ``pip install awscli``). The AWS CLI from
   PyPI pins its own botocore, which conflicts with s3fs/aiobotocore: it never goes into
   the project's venv.
4. For each repetition, in alternating order, each on a fresh moto server:
   - cryostash up: :func:`cryostash.transfer.datapath.pack_image`, what ``cryostash create`` runs
     after the dump (FastCDC chunks, BLAKE3, zstd, upload of the chunks the store
     lacks; runs of zeros are recognised and never sent);
   - cryostash down: :func:`cryostash.transfer.datapath.unpack_image`, what ``cryostash restore``
     runs before the engine (fetch, decode, verify every chunk, write); no local chunk
     cache, so every byte comes from S3;
   - ``aws s3 sync DIR s3://...`` and ``aws s3 sync s3://... DIR``.
   Every downloaded folder is checked against the source.
5. Prints the median seconds and MB/s of each, and the ratios cryostash / aws (> 1 means
   cryostash is faster). ``--check`` exits 1 if cryostash is slower either way.

Needs: the project installed with its dev extra (s3fs, moto[server]), network access to
PyPI the first time (for the AWS CLI venv).
"""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import blake3

#: The AWS CLI's own venv (outside the repository, made once).
AWS_VENV = (
    Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "cryostash" / "awscli-venv"
)
MIB = 1 << 20
KEY, SECRET = "bench", "bench-secret"

#: The small files of the image folder: name -> (size in bytes, share of random bytes).
SMALL: dict[str, tuple[int, float]] = {
    "pagemap-1.img": (1 * MIB + 4096, 1.0),
    "mm-1.img": (96 * 1024, 1.0),
    "core-1.img": (12 * 1024, 1.0),
    "files.img": (48 * 1024, 1.0),
    "fs-1.img": (64, 1.0),
    "ids-1.img": (128, 1.0),
    "inventory.img": (96, 1.0),
    "fdinfo-2.img": (1024, 1.0),
    "tty-info.img": (512, 1.0),
    "stats-dump": (256, 1.0),
    "pstree.img": (64, 1.0),
}
#: The image folder, 512 MiB in all: ``pages-1.img`` (the memory: half random bytes, half
#: zeros, as CRIU writes them) fills what the small files leave.
IMAGE: dict[str, tuple[int, float]] = {
    "pages-1.img": (512 * MIB - sum(size for size, _ in SMALL.values()), 0.5),
    **SMALL,
}


def image_bytes() -> int:
    """Total size of the image folder: 512 MiB."""
    return sum(size for size, _ in IMAGE.values())


def make_image(folder: Path, pages_random: float = 0.5) -> None:
    """Write :data:`IMAGE` into ``folder`` (random bytes from os.urandom, then zeros);
    ``pages_random`` is the share of random bytes in ``pages-1.img``."""
    folder.mkdir(parents=True, exist_ok=True)
    for name, (size, share) in IMAGE.items():
        if name == "pages-1.img":
            share = pages_random
        random_part = int(size * share)
        with open(folder / name, "wb") as fh:
            left = random_part
            while left:
                n = min(left, 8 * MIB)
                fh.write(os.urandom(n))
                left -= n
            left = size - random_part
            while left:
                n = min(left, 8 * MIB)
                fh.write(bytes(n))
                left -= n


def digests(folder: Path) -> dict[str, str]:
    """BLAKE3 of every file under ``folder``, by relative path."""
    out = {}
    for path in sorted(folder.rglob("*")):
        if path.is_file():
            out[path.relative_to(folder).as_posix()] = blake3.blake3(path.read_bytes()).hexdigest()
    return out


# -- moto ---------------------------------------------------------------------------------


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextmanager
def moto_server() -> Iterator[str]:
    """A private moto server on 127.0.0.1; yields its endpoint; stops it by PID."""
    binary = Path(sys.executable).parent / "moto_server"
    if not binary.exists():
        sys.exit(f"{binary} not found: install the dev extra (pip install -e '.[dev]')")
    port = _free_port()
    proc = subprocess.Popen(
        [str(binary), "-H", "127.0.0.1", "-p", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    try:
        deadline = time.monotonic() + 30
        while True:
            if proc.poll() is not None:
                sys.exit(f"moto_server exited with status {proc.returncode}")
            with socket.socket() as sock:
                if sock.connect_ex(("127.0.0.1", port)) == 0:
                    break
            if time.monotonic() > deadline:
                sys.exit("moto_server did not start within 30 s")
            time.sleep(0.05)
        yield f"http://127.0.0.1:{port}"
    finally:
        with_group = True
        try:
            os.killpg(proc.pid, signal.SIGTERM)
        except ProcessLookupError:
            with_group = False
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            if with_group:
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


# -- aws ------------------------------------------------------------------------------------


def aws_cli(explicit: str | None) -> list[str]:
    """The AWS CLI command: ``explicit`` or ``$AWS_CLI``, else the bench's own venv."""
    given = explicit or os.environ.get("AWS_CLI")
    if given:
        return [given]
    aws = AWS_VENV / "bin" / "aws"
    if not aws.exists():
        print(f"creating {AWS_VENV} with the AWS CLI (pip install awscli) ...", flush=True)
        shutil.rmtree(AWS_VENV, ignore_errors=True)
        base = getattr(sys, "_base_executable", sys.executable)
        subprocess.run([base, "-m", "venv", str(AWS_VENV)], check=True)
        pip = [str(AWS_VENV / "bin" / "python"), "-m", "pip", "install", "--quiet"]
        subprocess.run([*pip, "--upgrade", "pip"], check=True)
        subprocess.run([*pip, "awscli"], check=True)
    return [str(aws)]


def aws_env(endpoint: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
    env.update(
        AWS_ACCESS_KEY_ID=KEY,
        AWS_SECRET_ACCESS_KEY=SECRET,
        AWS_DEFAULT_REGION="us-east-1",
        AWS_ENDPOINT_URL=endpoint,
        AWS_CONFIG_FILE=os.devnull,
        AWS_SHARED_CREDENTIALS_FILE=os.devnull,
        AWS_EC2_METADATA_DISABLED="true",
    )
    return env


def aws_version(aws: list[str], env: dict[str, str]) -> str:
    done = subprocess.run([*aws, "--version"], capture_output=True, text=True, env=env)
    return (done.stdout or done.stderr).strip().split(" ")[0]


# -- runs -------------------------------------------------------------------------------------


@dataclass
class Config:
    """cryostash's knobs: ``--jobs``, ``--chunk-size``, ``--compression`` (None: default)."""

    jobs: int
    chunk_size: str | None = None
    compression: str | None = None

    def env(self) -> dict[str, str]:
        env = {"CRYOSTASH_CONFIG": os.devnull, "CRYOSTASH_CACHE": "none"}
        if self.chunk_size:
            env["CRYOSTASH_CHUNK_SIZE"] = self.chunk_size
        if self.compression:
            env["CRYOSTASH_COMPRESSION"] = self.compression
        return env

    def describe(self) -> str:
        return (
            f"--jobs {self.jobs}, --chunk-size {self.chunk_size or 'default (1M)'}, "
            f"--compression {self.compression or 'default (zstd 3)'}, no chunk cache"
        )


def timed(fn: Callable[[], object]) -> float:
    start = time.monotonic()
    fn()
    return time.monotonic() - start


def make_bucket(fs: object, name: str) -> None:
    fs.mkdir(name)  # type: ignore[attr-defined]


def run_cryostash(
    endpoint: str, bucket: str, src: Path, dest: Path, config: Config
) -> tuple[float, float, int, int]:
    """What ``cryostash create`` does after the dump
    (:func:`cryostash.transfer.datapath.pack_image`: FastCDC chunks, BLAKE3, zstd, upload of
    the chunks the store lacks) and what ``cryostash restore`` does before the engine
    (:func:`cryostash.transfer.datapath.unpack_image`: fetch, decode, verify, write). No local
    chunk cache: every byte comes from S3.

    Returns seconds up, seconds down, bytes sent, bytes received.
    """
    from cryostash import resolve_settings
    from cryostash.store import Store
    from cryostash.transfer import datapath

    options = {"key": KEY, "secret": SECRET, "endpoint_url": endpoint}
    settings = resolve_settings(
        {"store": f"s3://{bucket}/store"}, config.env(), storage_options=options
    )
    store = Store(settings.store_url, settings.storage_options)
    start = time.monotonic()
    packed = datapath.pack_image(
        settings, store, src, reserve=lambda sizes: set(sizes), jobs=config.jobs
    )
    up = time.monotonic() - start
    start = time.monotonic()
    down = datapath.unpack_image(settings, store, packed.entries, dest, jobs=config.jobs)
    return up, time.monotonic() - start, packed.stats.bytes_uploaded, down.bytes_downloaded


def run_aws(
    aws: list[str], env: dict[str, str], bucket: str, src: Path, dest: Path
) -> tuple[float, float]:
    quiet = ["--only-show-errors", "--no-progress"]
    url = f"s3://{bucket}/sync"
    up = timed(lambda: subprocess.run([*aws, "s3", "sync", str(src), url, *quiet], env=env,
                                      check=True))  # fmt: skip
    down = timed(lambda: subprocess.run([*aws, "s3", "sync", url, str(dest), *quiet], env=env,
                                        check=True))  # fmt: skip
    return up, down


def measure(
    aws: list[str],
    src: Path,
    work: Path,
    config: Config,
    repeat: int,
    expected: dict[str, str],
    with_aws: bool = True,
) -> dict[str, list[float]]:
    """Run each tool ``repeat`` times, alternating which goes first, each run on a fresh
    moto server (moto slows down as it serves more data: a shared server would favour
    whoever runs first)."""
    import s3fs

    keys = ("cs_up", "cs_down", "aws_up", "aws_down", "cs_sent", "cs_received")
    times: dict[str, list[float]] = {key: [] for key in keys}
    for rep in range(repeat):
        order = ["cs", "aws"] if rep % 2 == 0 else ["aws", "cs"]
        for who in order:
            if who == "aws" and not with_aws:
                continue
            bucket = f"bench-{who}-{rep}"
            dest = work / f"down-{who}-{rep}"
            with moto_server() as endpoint:
                fs = s3fs.S3FileSystem(
                    key=KEY, secret=SECRET, endpoint_url=endpoint, skip_instance_cache=True
                )
                make_bucket(fs, bucket)
                if who == "cs":
                    up, down, sent, received = run_cryostash(endpoint, bucket, src, dest, config)
                    times["cs_sent"].append(sent)
                    times["cs_received"].append(received)
                else:
                    up, down = run_aws(aws, aws_env(endpoint), bucket, src, dest)
            got = digests(dest)
            if got != expected:
                sys.exit(f"{who}: the downloaded folder differs from the source")
            shutil.rmtree(dest)
            times[f"{who}_up"].append(up)
            times[f"{who}_down"].append(down)
            print(f"  rep {rep + 1} {who:>3}: up {up:6.2f} s, down {down:6.2f} s", flush=True)
    return times


def report(
    times: dict[str, list[float]], total: int, config: Config, aws_name: str, pages_random: float
) -> bool:
    def med(key: str) -> float:
        return statistics.median(times[key])

    mb = total / 1e6
    rows = [
        ("upload", med("cs_up"), med("aws_up")),
        ("download", med("cs_down"), med("aws_down")),
    ]
    print()
    print(f"image folder: {len(IMAGE)} files, {total / MIB:.0f} MiB ({pages_random:.0%} of "
          f"pages-1.img random, the rest zeros); moto server on loopback; median of "
          f"{len(times['cs_up'])} runs")  # fmt: skip
    print(f"cryostash: {config.describe()}; {aws_name}: aws s3 sync (defaults)")
    sent, received = med("cs_sent") / MIB, med("cs_received") / MIB
    print(f"bytes cryostash sent: {sent:.0f} MiB, received: {received:.0f} MiB (zero chunks "
          "are neither sent nor fetched; chunks are zstd-compressed); aws: the whole "
          "folder each way")  # fmt: skip
    print()
    print("| direction | cryostash s | cryostash MB/s | aws s3 sync s | aws MB/s | ratio |")
    print("|---|---:|---:|---:|---:|---:|")
    ok = True
    for name, cs, aws in rows:
        ratio = aws / cs
        ok = ok and ratio >= 1.0
        print(f"| {name} | {cs:.2f} | {mb / cs:.0f} | {aws:.2f} | {mb / aws:.0f} | "
              f"{ratio:.2f}x |")  # fmt: skip
    print()
    print("MB/s = image folder size / time; ratio = aws time / cryostash time "
          "(above 1: cryostash is faster)")  # fmt: skip
    return ok


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--repeat", type=int, default=3, help="runs of each (median; default 3)")
    parser.add_argument("--jobs", type=int, default=4, help="cryostash --jobs (default 4)")
    parser.add_argument("--chunk-size", help="cryostash --chunk-size (default: its own, 1M)")
    parser.add_argument("--compression", help="cryostash --compression (default: zstd 3)")
    parser.add_argument("--aws", help="AWS CLI to compare with (default: a private venv)")
    parser.add_argument("--pages-random", type=float, default=0.5,
                        help="share of random bytes in pages-1.img (default 0.5; 1.0: no "
                        "zeros for cryostash to skip, nothing to compress)")  # fmt: skip
    parser.add_argument("--workdir", help="where to write the image folder (default: a temp dir)")
    parser.add_argument("--sweep", action="store_true",
                        help="cryostash only: jobs 2/4/8 x chunk sizes 1M/4M")  # fmt: skip
    parser.add_argument("--check", action="store_true",
                        help="exit 1 unless cryostash is at least as fast both ways")  # fmt: skip
    args = parser.parse_args(argv)

    aws = aws_cli(args.aws)
    work = Path(tempfile.mkdtemp(prefix="cryostash-bench-", dir=args.workdir))
    try:
        src = work / "image"
        print(f"making the image folder in {src} ...", flush=True)
        make_image(src, args.pages_random)
        expected = digests(src)
        total = image_bytes()
        aws_name = aws_version(aws, aws_env("http://127.0.0.1:1"))
        if args.sweep:
            rows = []
            for jobs in (2, 4, 8):
                for chunk in ("1M", "4M"):
                    config = Config(jobs, chunk, args.compression)
                    t = measure(aws, src, work, config, args.repeat, expected, with_aws=False)
                    rows.append((jobs, chunk, statistics.median(t["cs_up"]),
                                 statistics.median(t["cs_down"])))  # fmt: skip
            print("| jobs | chunk size | up s | up MB/s | down s | down MB/s |")
            print("|---:|---:|---:|---:|---:|---:|")
            for jobs, chunk, up, down in rows:
                print(f"| {jobs} | {chunk} | {up:.2f} | {total / 1e6 / up:.0f} | "
                      f"{down:.2f} | {total / 1e6 / down:.0f} |")  # fmt: skip
            return 0
        config = Config(args.jobs, args.chunk_size, args.compression)
        times = measure(aws, src, work, config, args.repeat, expected)
        ok = report(times, total, config, aws_name, args.pages_random)
        return 0 if ok or not args.check else 1
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
