"""Provide CRIU's image reader (pycriu, with crit) in the CRIU prefix.

``inspect --tree/--files/--memory`` and ``diff`` read CRIU images with pycriu, CRIU's own
Python package (pure Python; it needs ``protobuf``, a dependency of cryostash). It comes
from the same Debian suite as the prefix's CRIU: ``apt-get download python3-pycriu`` in a
private apt configuration (:mod:`cryostash.install.debian`), ``dpkg-deb -x``, and its
``dist-packages`` moved to ``PREFIX/pycriu`` (:func:`~cryostash.engines.criu_reader.reader_path`).
``PREFIX/pycriu.json`` records the package and version. The result is verified by
importing ``pycriu.images`` from there in a new interpreter. Any failure raises
:class:`~cryostash.errors.EngineError` with the reason.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

from cryostash.engines.criu_reader import READER_RECORD, reader_path

__all__ = ["PACKAGE", "install", "provide", "reader_path", "reader_version"]
from cryostash.errors import EngineError
from cryostash.install import debian as deb

log = logging.getLogger(__name__)

PACKAGE = deb.READER_PACKAGES[0]
_DIST = Path("usr/lib/python3/dist-packages")


def reader_version(prefix: Path) -> str | None:
    """The version of the pycriu package installed in ``prefix``, None when absent."""
    try:
        record = json.loads((prefix / READER_RECORD).read_text())
    except (OSError, ValueError):
        return None
    if not isinstance(record, dict) or not (reader_path(prefix) / "pycriu").is_dir():
        return None
    version = record.get("version")
    return version if isinstance(version, str) else None


def install(prefix: Path, package: Path, stage: Path) -> str:
    """Extract the downloaded ``python3-pycriu`` .deb ``package`` into ``prefix``
    (through ``stage``), verify it imports, record it; returns its version."""
    version = deb.deb_version(package)
    root = stage / "pycriu-root"
    shutil.rmtree(root, ignore_errors=True)
    deb.extract([package], root)
    dist = root / _DIST
    if not (dist / "pycriu" / "images").is_dir():
        raise EngineError(f"{package.name} holds no {_DIST}/pycriu/images")
    dest = reader_path(prefix)
    (prefix / READER_RECORD).unlink(missing_ok=True)
    shutil.rmtree(dest, ignore_errors=True)
    os.rename(dist, dest)
    _verify(dest)
    record = {
        "package": PACKAGE,
        "version": version,
        "suite": deb.SUITE,
        "path": str(dest),
        "provisioned_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }
    tmp = prefix / (READER_RECORD + ".tmp")
    tmp.write_text(json.dumps(record, indent=2) + "\n")
    os.replace(tmp, prefix / READER_RECORD)
    log.info("%s %s provisioned into %s", PACKAGE, version, dest)
    return version


def _verify(dest: Path) -> None:
    """Import ``pycriu.images`` from ``dest`` in a new interpreter (protobuf must be there)."""
    code = f"import sys; sys.path.insert(0, {str(dest)!r}); import pycriu.images"
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=False
    )
    if done.returncode != 0:
        tail = "\n".join(done.stderr.strip().splitlines()[-5:])
        raise EngineError(
            f"{PACKAGE} in {dest} does not import with {sys.executable} "
            f"(is protobuf<7 installed? pip install 'protobuf<7'):\n{tail}"
        )


def provide(prefix: Path, mirror: str = deb.DEBIAN_MIRROR) -> str:
    """Download and install ``python3-pycriu`` alone into ``prefix`` (the caller holds the
    prefix's lock); returns its version.

    Raises:
        EngineError: apt-get/dpkg-deb missing, the package unavailable, or it does not
            import.
    """
    if shutil.which("apt-get") is None or shutil.which("dpkg-deb") is None:
        raise EngineError(
            f"cannot provision {PACKAGE}: apt-get/dpkg-deb not found (not Debian?)"
        )
    stage = prefix / ".stage-pycriu"
    shutil.rmtree(stage, ignore_errors=True)
    try:
        env = deb.private_apt(stage, mirror)
        log.info("downloading %s from Debian %s", PACKAGE, deb.SUITE)
        deb.apt_update(env)
        debs = deb.download(env, stage / "debs", deb.READER_PACKAGES)
        return install(prefix, debs[PACKAGE], stage)
    finally:
        shutil.rmtree(stage, ignore_errors=True)
