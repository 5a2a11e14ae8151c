"""Store backends for the conformance tests, and a raw helper that bypasses ``Store``.

Every test that takes the ``backend`` fixture runs once per name in :data:`BACKENDS`:

- ``memory``: ``memory://`` with a unique root per test; fsspec's process-wide
  MemoryFileSystem store is cleared afterwards.
- ``local``: a fresh folder under ``tmp_path`` (not created: the store creates it).
- ``s3``: a fresh bucket on a moto server started once per session
  (``moto_server -H 127.0.0.1 -p PORT``), or on the S3-compatible endpoint named by
  ``CRYOSTASH_TEST_S3_ENDPOINT`` (credentials ``CRYOSTASH_TEST_S3_KEY``/``_SECRET``,
  default ``testing``). When neither moto nor s3fs is available, the S3 cases skip
  (fail under ``CI=true``) via :func:`tests.support.requirements.missing`.

To add a backend: add its name to :data:`BACKENDS` and a branch to
:func:`make_backend` that returns a :class:`Backend` (URL, storage options, cleanup).

Use it in a test module with
``from tests.support.stores import backend_fixture, moto_endpoint_fixture  # noqa: F401``
(pytest finds fixtures imported into the module; they are registered under the names
``backend`` and ``moto_endpoint``). A ``conftest.py`` may import them instead.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from cryostash.storage import Store, layout
from tests.support.requirements import missing

#: The backends every conformance test runs against.
BACKENDS = ["memory", "local", "s3"]


class RawStore:
    """Direct access to a store's objects through fsspec, bypassing :class:`Store`:
    to plant, read, corrupt or remove objects behind the code under test."""

    def __init__(self, fs: Any, root: str) -> None:
        self.fs = fs
        self.root = root.rstrip("/")

    def path(self, rel: str) -> str:
        """Full filesystem path of ``rel`` (relative to the store root)."""
        return layout.join(self.root, rel)

    @staticmethod
    def manifest(target: str, name: str) -> str:
        """Relative path of a manifest."""
        return f"checkpoints/{target}/{name}/manifest.json"

    @staticmethod
    def blob(digest: str) -> str:
        """Relative path of a blob."""
        return f"blobs/{digest[:2]}/{digest}"

    def put(self, rel: str, data: bytes) -> None:
        """Write ``data`` at ``rel`` (overwriting), making parents as needed."""
        full = self.path(rel)
        parent = full.rpartition("/")[0]
        protocols = (
            {self.fs.protocol} if isinstance(self.fs.protocol, str) else set(self.fs.protocol)
        )
        if "s3" not in protocols:  # object stores have no folders to make
            self.fs.makedirs(parent, exist_ok=True)
        self.fs.pipe_file(full, data)
        self.fs.invalidate_cache()

    def get(self, rel: str) -> bytes:
        """The bytes at ``rel``."""
        return bytes(self.fs.cat_file(self.path(rel)))

    def exists(self, rel: str) -> bool:
        """True if an object exists at ``rel``."""
        self.fs.invalidate_cache()
        return bool(self.fs.exists(self.path(rel)))

    def remove(self, rel: str) -> None:
        """Delete the object at ``rel``."""
        self.fs.rm_file(self.path(rel))
        self.fs.invalidate_cache()

    def flip_byte(self, rel: str, offset: int = 0) -> None:
        """Corrupt the object at ``rel`` by inverting one byte."""
        data = bytearray(self.get(rel))
        data[offset] ^= 0xFF
        self.put(rel, bytes(data))

    def files(self) -> list[str]:
        """Every object under the root, relative to it, sorted."""
        self.fs.invalidate_cache()
        try:
            found = self.fs.find(self.root)
        except FileNotFoundError:
            return []
        prefix = self.root.lstrip("/") + "/"
        return sorted(str(p).lstrip("/").removeprefix(prefix) for p in found)


@dataclass
class Backend:
    """One store backend for one test: how to open it and how to reach it raw."""

    name: str
    url: str
    storage_options: dict[str, Any] = field(default_factory=dict)
    cleanup: Callable[[], None] = lambda: None

    def store(self) -> Store:
        """A new :class:`Store` on this backend's root."""
        return Store(self.url, self.storage_options)

    @property
    def raw(self) -> RawStore:
        """Raw access to the same root, opened independently of :class:`Store`."""
        if "://" not in self.url:
            from fsspec.implementations.local import LocalFileSystem

            return RawStore(LocalFileSystem(), self.url)
        from fsspec.core import url_to_fs

        fs, root = url_to_fs(self.url, **self.storage_options)
        return RawStore(fs, root)


# -- S3 on moto -------------------------------------------------------------------------


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _wait_for_port(port: int, proc: subprocess.Popen[bytes], timeout: float = 15.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"moto_server exited with status {proc.returncode}")
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
            if sock.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.05)
    raise RuntimeError(f"moto_server did not listen on port {port} within {timeout} s")


@pytest.fixture(scope="session", name="moto_endpoint")
def moto_endpoint_fixture() -> Iterator[dict[str, Any]]:
    """s3fs storage options for a running S3 endpoint (a private moto server)."""
    try:
        import s3fs  # noqa: F401
    except ImportError as exc:
        missing("S3 (s3fs)", str(exc))
    key = os.environ.get("CRYOSTASH_TEST_S3_KEY", "testing")
    secret = os.environ.get("CRYOSTASH_TEST_S3_SECRET", "testing")
    existing = os.environ.get("CRYOSTASH_TEST_S3_ENDPOINT")
    if existing:
        yield {"key": key, "secret": secret, "endpoint_url": existing}
        return
    binary = shutil.which("moto_server") or str(Path(sys.executable).parent / "moto_server")
    if not os.path.exists(binary):
        missing("S3 (moto)", "moto_server not found; install moto[server]")
    port = _free_port()
    proc = subprocess.Popen(
        [binary, "-H", "127.0.0.1", "-p", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    try:
        _wait_for_port(port, proc)
        yield {"key": key, "secret": secret, "endpoint_url": f"http://127.0.0.1:{port}"}
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def make_backend(name: str, request: pytest.FixtureRequest, tmp_path: Path) -> Backend:
    """Build backend ``name`` for the test that ``request`` belongs to."""
    unique = uuid.uuid4().hex[:12]
    if name == "memory":
        from fsspec.implementations.memory import MemoryFileSystem

        def clear_memory() -> None:
            MemoryFileSystem.store.clear()
            MemoryFileSystem.pseudo_dirs[:] = [""]

        return Backend(name, f"memory://cryostash-test-{unique}/root", cleanup=clear_memory)
    if name == "local":
        return Backend(name, str(tmp_path / "store"))
    if name == "s3":
        options = request.getfixturevalue("moto_endpoint")
        import s3fs

        fs = s3fs.S3FileSystem(**options)
        bucket = f"cryostash-test-{unique}"
        fs.mkdir(bucket)

        def drop_bucket() -> None:
            fs.invalidate_cache()
            with contextlib.suppress(Exception):
                fs.rm(bucket, recursive=True)

        return Backend(name, f"s3://{bucket}/root", dict(options), cleanup=drop_bucket)
    raise ValueError(f"unknown test backend {name!r}")


@pytest.fixture(params=BACKENDS, name="backend")
def backend_fixture(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Backend]:
    """Each store backend in turn, fresh and empty for this test."""
    made = make_backend(str(request.param), request, tmp_path)
    try:
        yield made
    finally:
        made.cleanup()
