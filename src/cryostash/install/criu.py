"""Provide a working CRIU >= 4.2, without upgrading the system's libc.

Run ``python -m cryostash.install.criu [--prefix DIR] [--force] [--json]``
(as root), or call :func:`provision`.

1. A ``criu`` on ``PATH`` that is >= 4.2 and passes ``criu check`` is used as it is.
   (Debian 12's 3.17 fails ``criu check`` on recent kernels; Debian 13's 4.1 cannot
   dump TCP/UDP sockets on Linux >= 6.16: both lead to step 2.)
2. Otherwise CRIU comes from Debian testing (``forky``) into a private prefix (see
   :mod:`cryostash.install.debian`): a private apt configuration runs
   ``apt-get update`` and ``apt-get download criu libc6 libnl-3-200 libnet9``;
   ``dpkg-deb -x`` extracts them into ``PREFIX/root``; patchelf (or a wrapper script)
   makes ``PREFIX/bin/criu`` run it with the prefix's loader and libc. The other
   libraries (libbsd, gnutls, nftables, protobuf-c, uuid) come from the system and
   are installed with apt when missing, with ``iptables`` (runc needs it) and
   ``patchelf``. ``PREFIX/VERSION`` holds the version and ``PREFIX/provision.json``
   the exact package versions downloaded.

A finished prefix is reused without downloading anything (about 0.1 s, most of it
``criu check``). The result is verified with ``criu --version`` and, as root,
``criu check``. Any failure (download, a version < 4.2, a missing library,
``criu check``) raises :class:`~cryostash.errors.EngineError` with the reason; there
is no silent fallback to an older CRIU.

3. Whichever CRIU is used, the prefix also gets CRIU's image reader, Debian's
   ``python3-pycriu`` (``inspect --tree/--files/--memory`` and ``diff`` read images with
   it; :mod:`cryostash.install.image_reader`), recorded in ``PREFIX/pycriu.json``.
"""

from __future__ import annotations

import argparse
import contextlib
import fcntl
import json
import logging
import os
import shutil
import sys
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Literal

from cryostash.engines.criu_binary import (
    MIN_VERSION,
    criu_check,
    criu_version,
    default_prefix,
    is_recent,
    parse_version,
    prefix_criu_path,
    run_criu,
    version_tuple,
)
from cryostash.errors import CryostashError, EngineError
from cryostash.install import debian as deb
from cryostash.install import image_reader

log = logging.getLogger(__name__)

_RECORD = "provision.json"


@dataclass(frozen=True)
class ProvisionResult:
    """The CRIU that :func:`provision` found or made.

    Attributes:
        path: the binary to run (``PREFIX/bin/criu`` for a prefix).
        version: what ``criu --version`` says (e.g. ``"4.2.1"``).
        source: ``"system"`` (``criu`` on PATH) or ``"prefix"``.
        downloaded: True when this call downloaded and extracted packages.
        prefix: the prefix (None for a system CRIU).
        packages: Debian package name -> version downloaded into the prefix.
        method: ``"system"``, ``"patchelf"`` or ``"wrapper"``.
        checked: True when ``criu check`` passed (it needs root; False otherwise).
        pycriu: the version of the ``python3-pycriu`` package in the prefix.
    """

    path: Path
    version: str
    source: Literal["system", "prefix"]
    downloaded: bool = False
    prefix: Path | None = None
    packages: Mapping[str, str] = field(default_factory=dict)
    method: str = "system"
    checked: bool = False
    pycriu: str | None = None


def _verify_version(binary: Path) -> str:
    """The version of ``binary``, which must run and be >= 4.2."""
    code, out = run_criu(str(binary), ["--version"])
    version = parse_version(out) if code == 0 else None
    if version is None:
        hint = ""
        if "error while loading shared libraries" in out:
            needed = " ".join(deb.system_packages(deb.debian_major()))
            hint = f" (a system library is missing: apt-get install {needed})"
        raise EngineError(f"{binary} does not run{hint}: {out.strip()}")
    if not is_recent(version):
        raise EngineError(f"{binary} is CRIU {version}, older than 4.2: refusing to use it")
    return version


def _check(binary: Path, version: str) -> bool:
    """Run ``criu check`` as root (False when not root: it needs privileges)."""
    if os.geteuid() != 0:
        log.warning(
            "not root: `criu check` skipped (CRIU needs CAP_SYS_ADMIN or CAP_CHECKPOINT_RESTORE)"
        )
        return False
    passed, output = criu_check(str(binary))
    if not passed:
        raise EngineError(f"CRIU {version} at {binary} fails `criu check`: {output}")
    return True


def _system_criu(prefix: Path) -> ProvisionResult | None:
    """A suitable ``criu`` on PATH (>= 4.2, passes ``criu check``), else None."""
    found = shutil.which("criu")
    if not found or Path(found).resolve().is_relative_to(prefix.resolve()):
        return None
    version = criu_version(found)
    if version is None or not is_recent(version):
        return None
    passed, output = criu_check(found)
    if not passed:
        log.info("system criu %s at %s fails `criu check`: %s", version, found, output)
        return None
    return ProvisionResult(Path(found), version, "system", checked=True)


def _reuse(prefix: Path) -> ProvisionResult | None:
    """The finished prefix, verified; None when it is absent, incomplete or broken."""
    try:
        record = json.loads((prefix / _RECORD).read_text())
    except (OSError, ValueError):
        return None
    binary = prefix_criu_path(prefix)
    if not isinstance(record, dict) or not binary.exists():
        return None
    if criu_version(str(binary)) != record.get("version"):
        log.info("prefix %s is incomplete or broken: provisioning it again", prefix)
        return None
    version = _verify_version(binary)
    packages = record.get("packages")
    return ProvisionResult(
        binary,
        version,
        "prefix",
        prefix=prefix,
        packages=dict(packages) if isinstance(packages, dict) else {},
        method=str(record.get("method", "")),
        checked=_check(binary, version),
    )


@contextlib.contextmanager
def _locked(prefix: Path) -> Iterator[None]:
    """Hold an exclusive lock on ``prefix`` (concurrent provisioners wait)."""
    prefix.mkdir(parents=True, exist_ok=True)
    with open(prefix / ".lock", "w") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        yield


def _write_atomic(path: Path, text: str) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


def _provision_prefix(prefix: Path, mirror: str) -> ProvisionResult:
    """Download, extract, link and verify CRIU into ``prefix`` (lock held)."""
    arch = deb.dpkg_architecture()
    needed = [*deb.system_packages(deb.debian_major())]
    if os.geteuid() == 0:
        needed.append("patchelf")
    deb.ensure_system_packages(needed)
    started = time.monotonic()
    stage = prefix / ".stage"
    shutil.rmtree(stage, ignore_errors=True)
    (prefix / _RECORD).unlink(missing_ok=True)  # the prefix is not "done" until rewritten
    try:
        return _download_into(prefix, stage, mirror, arch, started)
    finally:
        shutil.rmtree(stage, ignore_errors=True)


def _download_into(
    prefix: Path, stage: Path, mirror: str, arch: str, started: float
) -> ProvisionResult:
    """The steps of :func:`_provision_prefix` that use the staging folder ``stage``."""
    env = deb.private_apt(stage, mirror)
    wanted = (*deb.PREFIX_PACKAGES, *deb.READER_PACKAGES)
    log.info("downloading %s from Debian %s", " ".join(wanted), deb.SUITE)
    stale_release = deb.apt_update(env)
    debs = deb.download(env, stage / "debs", wanted)
    reader = image_reader.install(prefix, debs.pop(image_reader.PACKAGE), stage)
    packages = {name: deb.deb_version(path) for name, path in debs.items()}
    if version_tuple(packages["criu"]) < MIN_VERSION:
        raise EngineError(
            f"Debian {deb.SUITE} offers criu {packages['criu']}, older than 4.2: "
            "refusing to install it"
        )
    deb.extract(list(debs.values()), stage / "root")
    shutil.rmtree(prefix / "root", ignore_errors=True)
    os.rename(stage / "root", prefix / "root")
    binary = prefix_criu_path(prefix)
    method = deb.link_binary(prefix / "root", binary, arch)
    version = _verify_version(binary)
    record = {
        "version": version,
        "packages": packages,
        "suite": deb.SUITE,
        "mirror": mirror,
        "method": method,
        "arch": arch,
        "valid_until_ignored": stale_release,
        "provisioned_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }
    _write_atomic(prefix / "VERSION", f"{version}\n")
    _write_atomic(prefix / _RECORD, json.dumps(record, indent=2) + "\n")
    log.info("CRIU %s provisioned into %s in %.1f s", version, prefix, time.monotonic() - started)
    return ProvisionResult(
        binary,
        version,
        "prefix",
        downloaded=True,
        prefix=prefix,
        packages=packages,
        method=method,
        checked=_check(binary, version),
        pycriu=reader,
    )


def _with_reader(
    found: ProvisionResult, prefix: Path, mirror: str, locked: bool = False
) -> ProvisionResult:
    """``found``, once the prefix has CRIU's image reader (provided now if it lacks it;
    ``locked``: the caller holds the prefix's lock)."""
    version = image_reader.reader_version(prefix)
    if version is None:
        with contextlib.nullcontext() if locked else _locked(prefix):
            version = image_reader.reader_version(prefix) or image_reader.provide(prefix, mirror)
    return replace(found, pycriu=version)


def provision(
    prefix: Path | None = None, force: bool = False, mirror: str = deb.DEBIAN_MIRROR
) -> ProvisionResult:
    """Find or provide a working CRIU >= 4.2 (see the module docstring).

    Args:
        prefix: private prefix for a downloaded CRIU (default: :func:`default_prefix`).
        force: download into the prefix again, even when it is already provisioned or
            a suitable system CRIU exists.
        mirror: Debian mirror URL serving the ``forky`` suite.

    Returns:
        The CRIU to use; ``downloaded`` is False when nothing had to be fetched.

    Raises:
        EngineError: CRIU could not be provided, or does not work here (the reason is
            in the message). Never falls back to a CRIU older than 4.2.
    """
    prefix = (prefix or default_prefix()).absolute()
    if not force:
        found = _system_criu(prefix) or _reuse(prefix)
        if found is not None:
            return _with_reader(found, prefix, mirror)
    if shutil.which("apt-get") is None or shutil.which("dpkg-deb") is None:
        raise EngineError(
            "cannot provision CRIU: apt-get/dpkg-deb not found (not Debian?); "
            "install CRIU >= 4.2 and pass --criu PATH"
        )
    with _locked(prefix):
        if not force:  # another process may have finished while we waited for the lock
            found = _reuse(prefix)
            if found is not None:
                return _with_reader(found, prefix, mirror, locked=True)
        return _provision_prefix(prefix, mirror)


def main(argv: Sequence[str] | None = None) -> int:
    """Command line ``python -m cryostash.install.criu``; returns the exit status."""
    parser = argparse.ArgumentParser(
        prog="python -m cryostash.install.criu",
        description="Provide CRIU >= 4.2: the system's, or Debian forky's in a private prefix.",
    )
    parser.add_argument(
        "--prefix", type=Path, default=None, help=f"private prefix (default: {default_prefix()})"
    )
    parser.add_argument("--force", action="store_true", help="download into the prefix again")
    parser.add_argument("--mirror", default=deb.DEBIAN_MIRROR, help="Debian mirror URL")
    parser.add_argument("--json", action="store_true", help="print the result as JSON")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="criu_provision: %(message)s")
    try:
        result = provision(args.prefix, force=args.force, mirror=args.mirror)
    except CryostashError as exc:
        print(f"criu_provision: error: {exc}", file=sys.stderr)
        return exc.exit_code
    if args.json:
        data = {k: str(v) if isinstance(v, Path) else v for k, v in asdict(result).items()}
        print(json.dumps(data, indent=2))
    else:
        state = "downloaded" if result.downloaded else "already provisioned"
        print(f"CRIU {result.version}: {result.path} ({result.source}, {state})")
        reader = image_reader.reader_path(args.prefix or default_prefix())
        print(f"pycriu {result.pycriu}: {reader}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
