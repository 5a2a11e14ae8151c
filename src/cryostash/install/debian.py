"""Debian mechanics of CRIU provisioning: apt in a private configuration, dpkg, patchelf.

Used by :mod:`cryostash.install.criu`; nothing here decides *whether* to
provision. Every failure raises :class:`~cryostash.errors.EngineError` naming the
command and the tail of its output.
"""

from __future__ import annotations

import contextlib
import logging
import os
import pwd
import shutil
import subprocess
from collections.abc import Mapping, Sequence
from pathlib import Path

from cryostash.errors import EngineError

log = logging.getLogger(__name__)

DEBIAN_MIRROR = "http://deb.debian.org/debian"
#: Debian testing, which has CRIU >= 4.2.
SUITE = "forky"
KEYRING = "/usr/share/keyrings/debian-archive-keyring.gpg"
#: Downloaded from :data:`SUITE` into the prefix: CRIU and the libraries it needs newer.
PREFIX_PACKAGES: tuple[str, ...] = ("criu", "libc6", "libnl-3-200", "libnet9")
#: Downloaded from :data:`SUITE` beside CRIU: its image reader (pycriu and crit, pure Python).
READER_PACKAGES: tuple[str, ...] = ("python3-pycriu",)
#: dpkg architecture -> (multiarch triplet, dynamic loader).
ARCHES: dict[str, tuple[str, str]] = {
    "amd64": ("x86_64-linux-gnu", "ld-linux-x86-64.so.2"),
    "arm64": ("aarch64-linux-gnu", "ld-linux-aarch64.so.1"),
}


def run_checked(
    args: Sequence[str], what: str, env: Mapping[str, str] | None = None, cwd: Path | None = None
) -> str:
    """Run a command and return its output (stdout and stderr).

    Raises:
        EngineError: it could not run or exited non-zero; names ``what`` and shows the
            last 10 lines of its output.
    """
    try:
        proc = subprocess.run(
            list(args),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            env=dict(env) if env is not None else None,
            cwd=cwd,
            check=False,
        )
    except OSError as exc:
        raise EngineError(f"{what}: cannot run {args[0]}: {exc}") from exc
    out = proc.stdout.decode(errors="replace")
    if proc.returncode != 0:
        tail = "\n".join(out.strip().splitlines()[-10:])
        raise EngineError(f"{what} failed (exit {proc.returncode}):\n{tail}")
    return out


def debian_major() -> int | None:
    """Major version of Debian from ``/etc/debian_version`` (``trixie/sid`` counts as 13)."""
    try:
        text = Path("/etc/debian_version").read_text().strip()
    except OSError:
        return None
    head = text.split(".", 1)[0]
    if head.isdigit():
        return int(head)
    return 13 if "/sid" in text else None


def system_packages(major: int | None) -> tuple[str, ...]:
    """System packages the prefix's CRIU needs (gnutls was renamed by Debian 13's t64)."""
    gnutls = "libgnutls30" if major is not None and major <= 12 else "libgnutls30t64"
    return ("libbsd0", gnutls, "libnftables1", "libprotobuf-c1", "libuuid1", "iptables")


def dpkg_architecture() -> str:
    """The dpkg architecture (``amd64``), which must be one of :data:`ARCHES`."""
    arch = run_checked(["dpkg", "--print-architecture"], "dpkg --print-architecture").strip()
    if arch not in ARCHES:
        raise EngineError(
            f"cannot provision CRIU for architecture {arch!r} (supported: {', '.join(ARCHES)})"
        )
    return arch


def missing_packages(packages: Sequence[str]) -> list[str]:
    """Those of ``packages`` that dpkg does not have installed."""
    missing = []
    for name in packages:
        proc = subprocess.run(
            ["dpkg-query", "-W", "-f=${db:Status-Status}", name],
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            check=False,
        )
        if proc.stdout.decode().strip() != "installed":
            missing.append(name)
    return missing


def ensure_system_packages(packages: Sequence[str]) -> list[str]:
    """Install the missing ``packages`` with the system's apt (root only).

    Returns:
        The packages that were installed.

    Raises:
        EngineError: some are missing and this is not root, or apt-get failed.
    """
    missing = missing_packages(packages)
    if not missing:
        return []
    if os.geteuid() != 0:
        raise EngineError(
            f"missing system packages {', '.join(missing)}: run as root "
            f"`apt-get install -y {' '.join(missing)}`"
        )
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive", "LC_ALL": "C"}
    install = ["apt-get", "install", "-y", "--no-install-recommends", *missing]
    log.info("installing system packages: %s", " ".join(missing))
    try:
        run_checked(install, "apt-get install", env)
    except EngineError:  # stale or empty package lists: update once, then retry
        run_checked(["apt-get", "update"], "apt-get update", env)
        run_checked(install, f"apt-get install {' '.join(missing)}", env)
    return missing


def private_apt(workdir: Path, mirror: str = DEBIAN_MIRROR) -> dict[str, str]:
    """Write an apt configuration of its own under ``workdir/apt``.

    Its ``sources.list`` names only ``SUITE main`` (signed by Debian's archive
    keyring); lists, cache and dpkg status are private, so the system's apt state is
    never touched.

    Returns:
        The environment to run ``apt-get`` with (``APT_CONFIG`` set).
    """
    apt = workdir / "apt"
    for sub in ("lists/partial", "cache/archives/partial", "sources.list.d", "apt.conf.d"):
        (apt / sub).mkdir(parents=True, exist_ok=True)
    (apt / "preferences.d").mkdir(exist_ok=True)
    (apt / "status").touch()
    (apt / "sources.list").write_text(f"deb [signed-by={KEYRING}] {mirror} {SUITE} main\n")
    settings = {
        "Dir::State": apt,
        "Dir::State::Lists": apt / "lists",
        "Dir::State::status": apt / "status",
        "Dir::Cache": apt / "cache",
        "Dir::Etc::SourceList": apt / "sources.list",
        "Dir::Etc::SourceParts": apt / "sources.list.d",
        "Dir::Etc::Parts": apt / "apt.conf.d",
        "Dir::Etc::Preferences": apt / "preferences",
        "Dir::Etc::PreferencesParts": apt / "preferences.d",
    }
    (apt / "apt.conf").write_text("".join(f'{k} "{v}";\n' for k, v in settings.items()))
    return {**os.environ, "APT_CONFIG": str(apt / "apt.conf"), "LC_ALL": "C"}


def apt_update(env: Mapping[str, str]) -> bool:
    """``apt-get update`` of the private sources.

    A mirror that serves a frozen snapshot of testing has a Release file whose
    ``Valid-Until`` date has passed; then the update is retried with that one check
    off (the signature is still verified).

    Returns:
        True when ``Valid-Until`` had to be ignored.
    """
    what = f"apt-get update of Debian {SUITE}"
    stale = False
    try:
        out = run_checked(["apt-get", "update"], what, env)
    except EngineError as exc:
        if "is expired" not in str(exc):
            raise
        log.warning("the %s Release file is expired (a snapshot?): ignoring Valid-Until", SUITE)
        stale = True
        out = run_checked(
            ["apt-get", "-o", "Acquire::Check-Valid-Until=false", "update"], what, env
        )
    # apt-get update exits 0 when an index could not be fetched: it only warns.
    failed = [line for line in out.splitlines() if line.startswith(("W:", "E:")) and "etch" in line]
    if failed:
        raise EngineError(f"{what} failed:\n" + "\n".join(failed[-10:]))
    return stale


def download(
    env: Mapping[str, str], dest: Path, packages: Sequence[str] = PREFIX_PACKAGES
) -> dict[str, Path]:
    """``apt-get download`` ``packages`` into ``dest``; return name -> .deb path."""
    dest.mkdir(parents=True, exist_ok=True)
    if os.geteuid() == 0:
        with contextlib.suppress(KeyError):  # let apt's sandbox user write there
            os.chown(dest, pwd.getpwnam("_apt").pw_uid, -1)
    what = f"apt-get download {' '.join(packages)} from Debian {SUITE}"
    run_checked(["apt-get", "download", *packages], what, env, cwd=dest)
    found = {p.name.split("_", 1)[0]: p for p in dest.glob("*.deb")}
    missing = [name for name in packages if name not in found]
    if missing:
        raise EngineError(f"apt-get download did not produce {', '.join(missing)}")
    return {name: found[name] for name in packages}


def deb_version(deb: Path) -> str:
    """The ``Version`` field of a .deb file."""
    return run_checked(["dpkg-deb", "-f", str(deb), "Version"], f"dpkg-deb -f {deb.name}").strip()


def extract(debs: Sequence[Path], root: Path) -> None:
    """``dpkg-deb -x`` every package into ``root``."""
    for deb in debs:
        run_checked(["dpkg-deb", "-x", str(deb), str(root)], f"dpkg-deb -x {deb.name}")


def link_binary(root: Path, binary: Path, arch: str) -> str:
    """Make ``binary`` run ``root``'s CRIU with ``root``'s libc.

    Forky's libc6 is merged-/usr: the loader and libc are under
    ``root/usr/lib/TRIPLET`` (``root/usr/lib64`` holds a symlink), not ``root/lib``.
    With patchelf the real binary gets that loader as interpreter and an RPATH (the
    prefix's libraries, then the system's; ``--force-rpath`` because a RUNPATH would
    not apply to the system libraries' own dependencies) and ``binary`` is a symlink
    to it. Without patchelf ``binary`` is a shell wrapper exec'ing the loader with
    ``--library-path``.

    Returns:
        ``"patchelf"`` or ``"wrapper"``.
    """
    triplet, loader = ARCHES[arch]
    libdirs = [root / "usr" / "lib" / triplet, root / "lib" / triplet]
    ld_so = next((d / loader for d in libdirs if (d / loader).exists()), None)
    if ld_so is None:
        raise EngineError(f"the {SUITE} libc6 package has no {loader} under {root}")
    search = ":".join(
        [*(str(d) for d in libdirs if d.is_dir()), f"/lib/{triplet}", f"/usr/lib/{triplet}"]
    )
    real = root / "usr" / "sbin" / "criu"
    binary.parent.mkdir(parents=True, exist_ok=True)
    binary.unlink(missing_ok=True)
    patchelf = shutil.which("patchelf")
    if patchelf:
        args = ["--set-interpreter", str(ld_so), "--force-rpath", "--set-rpath", search]
        run_checked([patchelf, *args, str(real)], "patchelf")
        binary.symlink_to(os.path.relpath(real, binary.parent))
        return "patchelf"
    binary.write_text(f'#!/bin/sh\nexec "{ld_so}" --library-path "{search}" "{real}" "$@"\n')
    binary.chmod(0o755)
    return "wrapper"
