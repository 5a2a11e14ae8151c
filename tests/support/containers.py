"""Real containers for the container-engine tests: a busybox root filesystem, a counter
script, a private ``dockerd`` and private podman storage (the ``cryostash`` CLI run as a
simulated host is :class:`tests.support.cli.Host`).

The counter: ``i=0; while true; do i=$((i+1)); printf '%09d\n' $i 1<>/data/counter;
sleep 0.1; done`` in a busybox ``sh``. The count lives only in the shell's memory
(``/data`` is a bind mount of a host folder the test reads): a restored container goes on
from where it was dumped, a restarted one would start again from 1. Each value is a
fixed-size record written in place (``1<>``: no truncation), so the file's size never
changes: a dump that catches the shell with the file open would otherwise record a size
(0, just truncated) that the still-running counter changes before the restore, and CRIU
refuses to restore an open file whose size changed.

Every wait is on a condition with a deadline; every container and daemon a test starts
is stopped by the test (fixtures in the test modules).
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import tarfile
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

from tests.support.processes import wait_until
from tests.support.requirements import missing

BUSYBOX = Path("/bin/busybox")
COUNTER_SCRIPT = (
    "i=0; while true; do i=$((i+1)); printf '%09d\\n' $i 1<>/data/counter; sleep 0.1; done"
)
#: The counter plus an established TCP connection on the container's loopback (two
#: busybox ``nc -e sleep`` hold its ends): CRIU refuses to dump that without
#: ``--tcp-established``.
TCP_SCRIPT = (
    "nc -l -p 7000 -e sleep 100000 & "
    "until nc 127.0.0.1 7000 -e sleep 100000; do sleep 0.1; done & " + COUNTER_SCRIPT
)
INSTALL_HINT = "run scripts/install-runtimes (as root)"


def require_root_and(*tools: str) -> None:
    """Skip (or fail in CI) unless root and every tool is on PATH, plus a static busybox."""
    if os.geteuid() != 0:
        missing("container runtimes", "container checkpoint tests need root")
    for tool in tools:
        if shutil.which(tool) is None:
            missing(tool, f"{tool} not found on PATH: {INSTALL_HINT}")
    if not BUSYBOX.exists():
        missing("busybox-static", f"{BUSYBOX} not found: {INSTALL_HINT}")


def unique(prefix: str) -> str:
    """A container name no other test (or concurrent test run) uses."""
    return f"{prefix}-{uuid.uuid4().hex[:10]}"


def run(
    cmd: list[str], env: dict[str, str] | None = None, timeout: float = 120, check: bool = True
) -> subprocess.CompletedProcess[str]:
    """Run a command (stdin /dev/null, output captured); fail loudly when ``check``."""
    done = subprocess.run(
        cmd, stdin=subprocess.DEVNULL, capture_output=True, text=True, env=env,
        timeout=timeout, check=False,
    )
    if check and done.returncode != 0:
        raise AssertionError(f"{' '.join(cmd)} exited {done.returncode}: {done.stderr}")
    return done


# --- root filesystem ------------------------------------------------------------------


def build_rootfs(dest: Path) -> Path:
    """A minimal root filesystem: a static busybox, its applets as symlinks, empty
    mount points (``/proc``, ``/sys``, ``/dev``, ``/tmp``, ``/data``), ``/etc/passwd``."""
    (dest / "bin").mkdir(parents=True)
    for sub in ("proc", "sys", "dev", "tmp", "data", "etc", "run"):
        (dest / sub).mkdir()
    shutil.copy2(BUSYBOX, dest / "bin" / "busybox")
    applets = run([str(BUSYBOX), "--list"]).stdout.split()
    for applet in applets:
        if applet != "busybox":
            (dest / "bin" / applet).symlink_to("busybox")
    (dest / "etc" / "passwd").write_text("root:x:0:0:root:/:/bin/sh\n")
    (dest / "etc" / "group").write_text("root:x:0:\n")
    return dest


def rootfs_tarball(rootfs: Path, dest: Path) -> Path:
    """``rootfs`` as a tar archive (what ``docker import`` / ``podman import`` take)."""
    with tarfile.open(dest, "w") as tar:
        for entry in sorted(rootfs.iterdir()):
            tar.add(entry, arcname=entry.name)
    return dest


# --- the counter ------------------------------------------------------------------------


def read_count(path: Path) -> int | None:
    """The number in ``path``, or None while it is missing, empty or being rewritten."""
    try:
        text = path.read_text()
    except OSError:
        return None
    return int(text) if text.endswith("\n") and text.strip().isdigit() else None


def wait_count(path: Path, at_least: int, timeout: float = 20.0) -> int:
    """Wait until the counter in ``path`` reaches ``at_least``; return the value seen."""
    def reached() -> int | None:
        value = read_count(path)
        return value if value is not None and value >= at_least else None

    return wait_until(reached, timeout, f"the counter in {path} to reach {at_least}")


def assert_goes_on(
    path: Path,
    floor: int,
    timeout: float = 20.0,
    read: Callable[[Path], int | None] = read_count,
) -> list[int]:
    """Watch the counter until it passes ``floor + 2``; every value seen must be >= ``floor``.

    ``floor`` is a value read before the checkpoint was taken: a restored counter goes
    on from at least there; a restarted one would show 1, 2, ... first. ``read`` reads
    the counter file (None while it is unreadable): :func:`read_count` for the container
    counter, another for ``counter_prog.py``'s record. Returns the values seen.
    """
    seen: list[int] = []

    def passed() -> bool:
        value = read(path)
        if value is not None and (not seen or seen[-1] != value):
            seen.append(value)
        return value is not None and value >= floor + 2

    wait_until(passed, timeout, f"the counter in {path} to go on past {floor + 2}")
    assert all(v >= floor for v in seen), f"the counter restarted: {seen} (floor {floor})"
    return seen


# --- private dockerd --------------------------------------------------------------------


@dataclass
class Dockerd:
    """A private ``dockerd --experimental`` with its own containerd, data root, exec
    root, socket and pidfile. ``env`` points the docker CLI (and cryostash) at it."""

    base: Path
    proc: subprocess.Popen[bytes]

    @property
    def socket(self) -> Path:
        return self.base / "docker.sock"

    @property
    def env(self) -> dict[str, str]:
        return {**os.environ, "DOCKER_HOST": f"unix://{self.socket}"}

    def docker(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        return run(["docker", *args], env=self.env, check=check)


def _mounts_under(base: Path) -> list[str]:
    prefix = str(base) + "/"
    points = []
    for line in Path("/proc/self/mounts").read_text().splitlines():
        point = line.split()[1].replace("\\040", " ")
        if point.startswith(prefix):
            points.append(point)
    return sorted(points, key=len, reverse=True)


_CONTAINERD_CONFIG = """\
version = 2
root = "{base}/containerd/root"
state = "{base}/containerd/state"
disabled_plugins = ["io.containerd.grpc.v1.cri"]
[grpc]
  address = "{base}/containerd/containerd.sock"
[plugins."io.containerd.internal.v1.opt"]
  path = "{base}/containerd/opt"
"""


@contextlib.contextmanager
def private_dockerd(criu_dir: str) -> Iterator[Dockerd]:
    """Start a private containerd and dockerd (CRIU from ``criu_dir`` first on their
    PATH: containerd's runc runs ``criu``); stop both by PID.

    containerd is started explicitly (``dockerd --containerd``): left to itself, dockerd
    would use a system containerd whenever ``/run/containerd/containerd.sock`` exists,
    and that one's runc would not find our CRIU. Short paths under /tmp: unix socket
    paths are limited to 108 bytes.
    """
    import tempfile

    base = Path(tempfile.mkdtemp(prefix="csd-", dir="/tmp"))
    env = {**os.environ, "PATH": f"{criu_dir}:{os.environ.get('PATH', os.defpath)}"}
    env.pop("DOCKER_HOST", None)
    (base / "containerd").mkdir()
    config = base / "containerd" / "config.toml"
    config.write_text(_CONTAINERD_CONFIG.format(base=base))
    sock = base / "containerd" / "containerd.sock"
    procs: list[subprocess.Popen[bytes]] = []
    daemon: Dockerd | None = None
    try:
        procs.append(_daemon(["containerd", "--config", str(config)], base / "containerd.log", env))
        wait_until(lambda: _alive(procs[0], base / "containerd.log") and sock.exists(), 60,
                   f"containerd to listen on {sock}", interval=0.05)
        procs.append(_daemon(
            [
                "dockerd", "--experimental", "--containerd", str(sock),
                "--data-root", str(base / "data"), "--exec-root", str(base / "exec"),
                "-H", f"unix://{base / 'docker.sock'}", "--pidfile", str(base / "docker.pid"),
                "--iptables=false", "--ip-masq=false", "--bridge=none",
            ],
            base / "dockerd.log", env,
        ))
        daemon = Dockerd(base, procs[1])
        wait_until(
            lambda: _alive(procs[1], base / "dockerd.log")
            and daemon is not None and daemon.docker("version", check=False).returncode == 0,
            60, f"dockerd to answer on {daemon.socket}", interval=0.1,
        )
        yield daemon
    finally:
        if daemon is not None:
            with contextlib.suppress(Exception):
                ids = daemon.docker("ps", "-aq", check=False).stdout.split()
                if ids:
                    daemon.docker("rm", "-f", *ids, check=False)
        for proc in reversed(procs):  # dockerd first, then containerd
            _stop(proc)
        for point in _mounts_under(base):
            subprocess.run(["umount", "-l", point], check=False, capture_output=True)
        shutil.rmtree(base, ignore_errors=True)


def _daemon(argv: list[str], log_path: Path, env: dict[str, str]) -> subprocess.Popen[bytes]:
    """Start a daemon in its own session, output to ``log_path``."""
    with log_path.open("wb") as log:
        return subprocess.Popen(
            argv, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT, env=env,
            start_new_session=True,
        )


def _alive(proc: subprocess.Popen[bytes], log_path: Path) -> bool:
    """True while ``proc`` runs; AssertionError with its log tail once it has exited."""
    if proc.poll() is None:
        return True
    tail = "\n".join(log_path.read_text(errors="replace").splitlines()[-20:])
    raise AssertionError(f"{log_path.stem} exited {proc.returncode}:\n{tail}")


def _stop(proc: subprocess.Popen[bytes]) -> None:
    """SIGTERM the daemon by PID, wait for it (SIGKILL after 30 s)."""
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=30)


# --- private podman storage -----------------------------------------------------------


def podman_env(base: Path) -> dict[str, str]:
    """Environment for a podman with its own storage and state under ``base``
    (``CONTAINERS_STORAGE_CONF`` and ``CONTAINERS_CONF``): a simulated host."""
    base.mkdir(parents=True, exist_ok=True)
    storage = base / "storage.conf"
    storage.write_text(
        "[storage]\n"
        'driver = "overlay"\n'
        f'graphroot = "{base / "graph"}"\n'
        f'runroot = "{base / "run"}"\n'
    )
    conf = base / "containers.conf"
    conf.write_text(f'[engine]\ntmp_dir = "{base / "tmp"}"\nevents_logger = "none"\n')
    return {**os.environ, "CONTAINERS_STORAGE_CONF": str(storage), "CONTAINERS_CONF": str(conf)}


def podman_reset(env: dict[str, str], base: Path) -> None:
    """Remove every container and image of that storage, unmount it, delete ``base``."""
    run(["podman", "rm", "-af", "-t", "0"], env=env, check=False)
    run(["podman", "system", "reset", "-f"], env=env, check=False)
    for point in _mounts_under(base):
        subprocess.run(["umount", "-l", point], check=False, capture_output=True)
    shutil.rmtree(base, ignore_errors=True)
