"""Store backends for the conformance tests, and a raw helper that bypasses ``Store``.

Every test that takes the ``backend`` fixture runs once per name in :data:`BACKENDS`:

- ``memory``: ``memory://`` with a unique root per test; fsspec's process-wide
  MemoryFileSystem store is cleared afterwards.
- ``local``: a fresh folder under ``tmp_path`` (not created: the store creates it).
- ``s3``: a fresh bucket on the session's S3 endpoint (:func:`moto_server`): one
  private moto server per test session (``moto_server -H 127.0.0.1 -p PORT``, through
  ``moto_launcher.py``) with an ``admin`` and a ``readonly`` IAM user, which checks
  credentials inside :meth:`MotoServer.authenticating` blocks; or the
  S3-compatible endpoint named by ``CRYOSTASH_TEST_S3_ENDPOINT`` (credentials
  ``CRYOSTASH_TEST_S3_KEY``/``_SECRET``, default ``testing``). When moto or s3fs is
  missing, the S3 cases skip (fail under ``CI=true``) via
  :func:`tests.support.requirements.missing`.

To add a backend: add its name to :data:`BACKENDS` and a branch to
:func:`make_backend` that returns a :class:`Backend` (URL, storage options, cleanup).

The fixtures ``backend``, ``moto_server`` and ``moto_endpoint`` are registered in
``tests/conftest.py``: use them by name, do not import them into a test module (a module
that does still shares the one server, but needs no import to do so).
"""

from __future__ import annotations

import atexit
import contextlib
import importlib.util
import json
import os
import socket
import subprocess
import sys
import time
import urllib.request
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from cryostash.objects import Backend as StorageBackend
from cryostash.objects import RetryPolicy
from cryostash.objects.location import open_backend
from cryostash.store import Store, layout
from tests.support.requirements import missing

#: The backends every conformance test runs against.
BACKENDS = ["memory", "local", "s3"]


class RawStore:
    """Direct access to a store's objects through fsspec, bypassing :class:`Store` and its
    backend: to plant, read, corrupt or remove objects behind the code under test.

    Attributes:
        filesystem: the fsspec file system (opened independently of cryostash).
        root: the store root in ``filesystem``'s own terms.
    """

    def __init__(self, filesystem: Any, root: str) -> None:
        self.filesystem = filesystem
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
        proto = self.filesystem.protocol
        protocols = {proto} if isinstance(proto, str) else set(proto)
        if "s3" not in protocols:  # object stores have no folders to make
            self.filesystem.makedirs(parent, exist_ok=True)
        self.filesystem.pipe_file(full, data)
        self.filesystem.invalidate_cache()

    def get(self, rel: str) -> bytes:
        """The bytes at ``rel``."""
        return bytes(self.filesystem.cat_file(self.path(rel)))

    def exists(self, rel: str) -> bool:
        """True if an object exists at ``rel``."""
        self.filesystem.invalidate_cache()
        return bool(self.filesystem.exists(self.path(rel)))

    def remove(self, rel: str) -> None:
        """Delete the object at ``rel``."""
        self.filesystem.rm_file(self.path(rel))
        self.filesystem.invalidate_cache()

    def flip_byte(self, rel: str, offset: int = 0) -> None:
        """Corrupt the object at ``rel`` by inverting one byte."""
        data = bytearray(self.get(rel))
        data[offset] ^= 0xFF
        self.put(rel, bytes(data))

    def files(self) -> list[str]:
        """Every object under the root, relative to it, sorted."""
        self.filesystem.invalidate_cache()
        try:
            found = self.filesystem.find(self.root)
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

    def store(self, retry: RetryPolicy | None = None) -> Store:
        """A new :class:`Store` on this backend's root (``retry``: its retry policy)."""
        return Store(self.url, self.storage_options, retry=retry)

    def open(self) -> StorageBackend:
        """The bare :class:`~cryostash.objects.backend.Backend` of this root, opened as
        production opens it (:func:`~cryostash.objects.location.open_backend`; no retries,
        no cache): what the protocol conformance tests drive."""
        return open_backend(self.url, self.storage_options)

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


#: Runs moto_server with a fix (see its docstring).
MOTO_LAUNCHER = Path(__file__).resolve().parent / "moto_launcher.py"
#: IAM policies of the users made on the private moto server.
_POLICIES = {
    "admin": ["*"],
    "readonly": ["s3:Get*", "s3:List*", "s3:HeadBucket"],
}


@dataclass(frozen=True)
class Credentials:
    """An access key pair."""

    key: str
    secret: str


@dataclass
class MotoServer:
    """An S3 endpoint for the tests: the session's private moto server, or the endpoint
    named by ``CRYOSTASH_TEST_S3_ENDPOINT``.

    moto checks credentials only while :meth:`authenticating`: then unknown keys and
    wrong secrets are refused, and ``readonly`` may not write. (The server runs through
    ``moto_launcher.py``, which fixes moto's signature check of listings.)

    Attributes:
        endpoint: ``http://127.0.0.1:PORT``.
        admin: credentials allowed everything.
        readonly: credentials allowed ``s3:Get*``/``s3:List*`` only (None on an
            external endpoint, where they cannot be made).
    """

    endpoint: str
    admin: Credentials
    readonly: Credentials | None = None
    proc: subprocess.Popen[bytes] | None = None

    def options(self, creds: Credentials | None = None) -> dict[str, Any]:
        """s3fs storage options for ``creds`` (default: admin)."""
        creds = creds or self.admin
        return {"key": creds.key, "secret": creds.secret, "endpoint_url": self.endpoint}

    def env(self, creds: Credentials | None = None) -> dict[str, str]:
        """The standard AWS variables for ``creds`` (default: admin), and no AWS
        configuration files (so that the developer's own ``~/.aws`` is never used)."""
        creds = creds or self.admin
        return {
            "AWS_ACCESS_KEY_ID": creds.key,
            "AWS_SECRET_ACCESS_KEY": creds.secret,
            "AWS_ENDPOINT_URL": self.endpoint,
            "AWS_CONFIG_FILE": os.devnull,
            "AWS_SHARED_CREDENTIALS_FILE": os.devnull,
        }

    def make_bucket(self) -> str:
        """Create a fresh, empty bucket (admin) and return its name."""
        import s3fs

        bucket = f"cryostash-test-{uuid.uuid4().hex[:12]}"
        s3fs.S3FileSystem(**self.options()).mkdir(bucket)
        return bucket

    @contextlib.contextmanager
    def authenticating(self) -> Iterator[MotoServer]:
        """Check every request's credentials and permissions inside the block (moto's
        IAM simulation); skip (fail under CI) on an endpoint that is not ours."""
        if self.proc is None or self.readonly is None:
            missing("S3 authentication", "only the private moto server can switch it on")
        _set_auth(self.endpoint, "0")  # authenticate every request from now on
        try:
            yield self
        finally:
            _set_auth(self.endpoint, "inf")

    def stop(self) -> None:
        """Stop the server if this process started it (idempotent)."""
        proc, self.proc = self.proc, None
        if proc is None:
            return
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def _make_users(endpoint: str) -> dict[str, Credentials]:
    """Create the IAM users of :data:`_POLICIES` (before authentication is switched on)."""
    import boto3

    iam = boto3.client(
        "iam",
        endpoint_url=endpoint,
        aws_access_key_id="bootstrap",
        aws_secret_access_key="bootstrap",
        region_name="us-east-1",
    )
    users: dict[str, Credentials] = {}
    for name, actions in _POLICIES.items():
        iam.create_user(UserName=name)
        policy = {
            "Version": "2012-10-17",
            "Statement": [{"Effect": "Allow", "Action": actions, "Resource": "*"}],
        }
        iam.put_user_policy(UserName=name, PolicyName=name, PolicyDocument=json.dumps(policy))
        key = iam.create_access_key(UserName=name)["AccessKey"]
        users[name] = Credentials(key["AccessKeyId"], key["SecretAccessKey"])
    return users


def _set_auth(endpoint: str, after: str) -> None:
    """moto: authenticate every request after the next ``after`` ones (``inf``: never)."""
    request = urllib.request.Request(
        f"{endpoint}/moto-api/reset-auth",
        data=after.encode(),
        method="POST",
        headers={"Content-Type": "text/plain"},
    )
    with urllib.request.urlopen(request, timeout=10) as reply:
        reply.read()


def _start_moto() -> MotoServer:
    existing = os.environ.get("CRYOSTASH_TEST_S3_ENDPOINT")
    if existing:
        admin = Credentials(
            os.environ.get("CRYOSTASH_TEST_S3_KEY", "testing"),
            os.environ.get("CRYOSTASH_TEST_S3_SECRET", "testing"),
        )
        return MotoServer(existing, admin)
    if importlib.util.find_spec("moto") is None or importlib.util.find_spec("flask") is None:
        raise FileNotFoundError("moto[server] is not installed")
    port = _free_port()
    proc = subprocess.Popen(
        [sys.executable, str(MOTO_LAUNCHER), "-H", "127.0.0.1", "-p", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    server = MotoServer(f"http://127.0.0.1:{port}", Credentials("", ""), proc=proc)
    try:
        _wait_for_port(port, proc)
        users = _make_users(server.endpoint)
    except BaseException:
        server.stop()
        raise
    server.admin, server.readonly = users["admin"], users["readonly"]
    atexit.register(server.stop)
    return server


_moto: MotoServer | None = None
_moto_failure: str | None = None


def moto_server() -> MotoServer:
    """The session's S3 endpoint, started on first use (one per test session, whichever
    modules ask), or skip/fail via :func:`~tests.support.requirements.missing`."""
    global _moto, _moto_failure
    try:
        import s3fs  # noqa: F401
    except ImportError as exc:
        missing("S3 (s3fs)", str(exc))
    if _moto is None and _moto_failure is None:
        try:
            _moto = _start_moto()
        except (OSError, RuntimeError, ImportError) as exc:
            _moto_failure = f"{type(exc).__name__}: {exc}"
    if _moto is None:
        missing("S3 (moto)", _moto_failure or "unknown")
    return _moto


@pytest.fixture(scope="session", name="moto_server")
def moto_server_fixture() -> Iterator[MotoServer]:
    """The session's S3 endpoint (see :class:`MotoServer`); stopped when the session ends."""
    server = moto_server()
    yield server
    server.stop()


@pytest.fixture(scope="session", name="moto_endpoint")
def moto_endpoint_fixture(moto_server: MotoServer) -> dict[str, Any]:
    """s3fs storage options (admin credentials) for the session's S3 endpoint."""
    return moto_server.options()


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
