"""What the multi-host examples stand on: S3, PostgreSQL, simulated hosts, a reaper.

Not part of cryostash: the examples' own scaffolding, so that each example is one command
on a fresh machine (``make examples`` or ``.venv/bin/python examples/NAME.py``, as root).

- :func:`s3_endpoint`: a private moto server on 127.0.0.1 and a free port (moto's server
  mode, a dev dependency), stopped by PID on exit; or the endpoint in
  ``$CRYOSTASH_EXAMPLE_S3_ENDPOINT`` (credentials from the usual ``AWS_*`` variables).
- :func:`postgres_url`: a private PostgreSQL cluster (``initdb`` + ``pg_ctl`` from
  ``/usr/lib/postgresql/*/bin``, as the ``postgres`` user when run as root), stopped on exit;
  or the database in ``$CRYOSTASH_EXAMPLE_PG_URL``.
- :class:`Host`: one simulated machine: its own host name, scratch folder and chunk cache,
  and the shared store and catalog; :meth:`Host.run` runs ``cryostash`` as that host and
  echoes the command line and its output.
- :class:`Reaper`: makes this script the "child subreaper" of everything it starts, so a
  restored process (which CRIU leaves to its nearest subreaper) is reaped the moment it
  exits. Without it PID 1 reaps it, which on some machines takes seconds, and CRIU can only
  restore a process into its PID once the old one is reaped: the simulated destination
  would wait for the simulated source's PID 1 — a wait no real second machine has.
"""

from __future__ import annotations

import contextlib
import ctypes
import json
import os
import pwd
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

HERE = Path(__file__).resolve().parent
CRYOSTASH = [sys.executable, "-m", "cryostash"]


def require_root() -> None:
    """Exit with a clear message unless running as root (CRIU needs it)."""
    if os.geteuid() != 0:
        sys.exit(f"{Path(sys.argv[0]).name} needs root (CRIU does): run it as root")


def wait_for(predicate: Callable[[], object], timeout: float, what: str) -> None:
    """Poll ``predicate`` until it is true; exit naming ``what`` after ``timeout`` s."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            sys.exit(f"timed out after {timeout:g} s waiting for {what}")
        time.sleep(0.02)


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _listening(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        return sock.connect_ex(("127.0.0.1", port)) == 0


@contextlib.contextmanager
def s3_endpoint() -> Iterator[str]:
    """An S3 endpoint URL (see the module docstring); sets test credentials for moto."""
    existing = os.environ.get("CRYOSTASH_EXAMPLE_S3_ENDPOINT")
    if existing:
        yield existing
        return
    os.environ.setdefault("AWS_ACCESS_KEY_ID", "example")
    os.environ.setdefault("AWS_SECRET_ACCESS_KEY", "example")
    port = _free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True,
    )
    try:
        wait_for(lambda: proc.poll() is not None or _listening(port), 30, "moto to listen")
        if proc.poll() is not None:
            sys.exit(f"moto server exited with status {proc.returncode} (pip install moto[server])")
        print(f"# S3: moto server PID {proc.pid} on http://127.0.0.1:{port}", flush=True)
        yield f"http://127.0.0.1:{port}"
    finally:
        if proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


def _pg_bin() -> Path:
    found = sorted(
        (p.parent for p in Path("/usr/lib/postgresql").glob("*/bin/initdb")),
        key=lambda p: int(p.parent.name) if p.parent.name.isdigit() else 0,
    )
    if not found:
        sys.exit("PostgreSQL binaries not found under /usr/lib/postgresql (apt-get install "
                 "postgresql), or set CRYOSTASH_EXAMPLE_PG_URL")
    return found[-1]


@contextlib.contextmanager
def postgres_url() -> Iterator[str]:
    """A SQLAlchemy URL of an empty PostgreSQL database (see the module docstring)."""
    existing = os.environ.get("CRYOSTASH_EXAMPLE_PG_URL")
    if existing:
        yield existing
        return
    binaries = _pg_bin()
    user = "postgres" if os.geteuid() == 0 else None  # initdb refuses to run as root
    if user is not None:
        try:
            pwd.getpwnam(user)
        except KeyError:
            user = "nobody"
    # In /tmp, not $TMPDIR: the postgres user must reach it (a private $TMPDIR may be 0700).
    base = Path(tempfile.mkdtemp(prefix="cryostash-example-pg-", dir="/tmp"))
    if user is not None:
        entry = pwd.getpwnam(user)
        os.chown(base, entry.pw_uid, entry.pw_gid)
    port = _free_port()
    data = base / "data"

    def pg(*args: str) -> None:
        done = subprocess.run(args, user=user, capture_output=True, text=True)
        if done.returncode != 0:
            log = (base / "log").read_text() if (base / "log").exists() else ""
            sys.exit(f"{Path(args[0]).name} failed: {done.stderr}{done.stdout}{log}")

    try:
        pg(str(binaries / "initdb"), "-D", str(data), "-U", "postgres", "--auth=trust",
           "-E", "UTF8", "--locale=C")
        pg(str(binaries / "pg_ctl"), "-D", str(data), "-l", str(base / "log"), "-w",
           "-t", "60", "-o", f"-p {port} -k {base} -c listen_addresses=127.0.0.1", "start")
        pid = (data / "postmaster.pid").read_text().split()[0]
        print(f"# PostgreSQL: private cluster PID {pid} on 127.0.0.1:{port}", flush=True)
        yield f"postgresql+psycopg://postgres@127.0.0.1:{port}/postgres"
    finally:
        if (data / "postmaster.pid").exists():
            subprocess.run([str(binaries / "pg_ctl"), "-D", str(data), "-m", "fast", "-w",
                            "stop"], user=user, capture_output=True, check=False)
        shutil.rmtree(base, ignore_errors=True)


def new_bucket(endpoint: str) -> str:
    """Create a fresh bucket on ``endpoint``; return its name."""
    import s3fs

    name = f"cryostash-example-{uuid.uuid4().hex[:8]}"
    s3fs.S3FileSystem(endpoint_url=endpoint).mkdir(name)
    return name


@dataclass
class Host:
    """A simulated machine (see the module docstring).

    Attributes:
        name: the host name cryostash records (``--host``).
        env: the environment of this host's ``cryostash`` commands.
    """

    name: str
    env: dict[str, str] = field(default_factory=dict)

    @classmethod
    def make(cls, name: str, work: Path, *, store: str, catalog: str,
             endpoint: str | None = None) -> Host:
        """A host with private scratch and cache folders under ``work/name``."""
        home = work / name
        env = {k: v for k, v in os.environ.items()
               if not k.startswith("CRYOSTASH_") or k == "CRYOSTASH_CRIU"}
        env.update({
            "CRYOSTASH_HOST": name,
            "CRYOSTASH_STORE": store,
            "CRYOSTASH_CATALOG": catalog,
            "CRYOSTASH_SCRATCH": str(home / "scratch"),
            "CRYOSTASH_CACHE": str(home / "cache"),
            "CRYOSTASH_CONFIG": os.devnull,
        })
        if endpoint is not None:
            env["CRYOSTASH_STORAGE_OPTIONS"] = json.dumps({"endpoint_url": endpoint})
        return cls(name, env)

    def command(self) -> str:
        """A shell-like command line that runs ``cryostash`` as this host (for ``--to``)."""
        own = {k: v for k, v in self.env.items() if k.startswith("CRYOSTASH_")}
        return shlex.join(["env", *(f"{k}={v}" for k, v in own.items()), *CRYOSTASH])

    def run(self, *args: str, check: bool = True, quiet: bool = False) -> str:
        """Run ``cryostash ARGS`` as this host; echo it; return stdout.

        Exits with the command's message if it fails and ``check`` is true.
        """
        print(f"[{self.name}] $ cryostash {shlex.join(args)}", flush=True)
        done = subprocess.run([*CRYOSTASH, *args], env=self.env, capture_output=True, text=True)
        if done.stdout and not quiet:
            print(done.stdout.rstrip(), flush=True)
        if done.stderr.strip() and (done.returncode != 0 or not quiet):
            print(done.stderr.rstrip(), file=sys.stderr, flush=True)
        if check and done.returncode != 0:
            sys.exit(f"cryostash {args[0]} failed with exit code {done.returncode}")
        return done.stdout

    def json(self, *args: str) -> object:
        """:meth:`run` with ``--json`` appended; the parsed output (not echoed)."""
        return json.loads(self.run(*args, "--json", quiet=True))


class Reaper:
    """Adopt and reap this script's orphaned descendants at once (see the module docstring).

    Use as a context manager; :meth:`watch` a PID that is (or becomes, once its parent is
    gone) this process's child. On exit every watched process still alive is killed.
    """

    PR_SET_CHILD_SUBREAPER = 36

    def __init__(self) -> None:
        self._pids: set[int] = set()

    def __enter__(self) -> Reaper:
        libc = ctypes.CDLL(None, use_errno=True)
        if libc.prctl(self.PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) != 0:
            sys.exit(f"prctl(PR_SET_CHILD_SUBREAPER): {os.strerror(ctypes.get_errno())}")
        return self

    def watch(self, pid: int) -> int:
        """Reap ``pid`` (a child of this process) as soon as it exits; returns ``pid``."""
        self._pids.add(pid)

        def reap() -> None:
            with contextlib.suppress(ChildProcessError):
                os.waitpid(pid, 0)

        threading.Thread(target=reap, name=f"reap-{pid}", daemon=True).start()
        return pid

    def __exit__(self, *exc: object) -> None:
        for pid in self._pids:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        for pid in self._pids:
            wait_for(lambda p=pid: not Path(f"/proc/{p}").exists(), 10, f"PID {pid} to end")


def start_counter(
    work: Path, reaper: Reaper, interval: float = 0.05, ballast_mib: int = 0
) -> tuple[int, Path]:
    """Start ``examples/counter.py`` writing to ``work/counter`` (holding ``ballast_mib``
    MiB of unchanging random bytes); wait until it counts. Returns its PID and the file."""
    path = work / "counter"
    proc = subprocess.Popen(
        [sys.executable, str(HERE / "counter.py"), str(path), str(interval), str(ballast_mib)],
        stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        start_new_session=True, cwd=work,
    )
    reaper.watch(proc.pid)
    wait_for(lambda: read_counter(path) >= 3, 15, "the counter to start counting")
    return proc.pid, path


def read_counter(path: Path) -> int:
    """The counter's last value (0 if it has not written one yet)."""
    try:
        return int(path.read_text().strip() or 0)
    except (FileNotFoundError, ValueError):
        return 0
