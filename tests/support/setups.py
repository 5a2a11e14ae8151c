"""A store + catalog + scratch folder for integrity tests, in the two shapes that matter.

- ``local-sqlite``: a local folder store and an embedded SQLite catalog (one host);
- ``s3-postgresql``: a fresh bucket on the session's moto server and a fresh database
  on the session's private PostgreSQL server (the multi-host shape).

A test module that wants them imports the ``setup`` fixture:
``from tests.support.setups import setup_fixture  # noqa: F401``; it uses the session's
``moto_endpoint`` and ``pg_server`` fixtures of ``tests/conftest.py``. ``setup`` is
parametrised over :data:`SHAPES`; :func:`make_setup` builds one for wider scopes.
A missing moto or PostgreSQL skips locally and fails under ``CI=true``.
"""

from __future__ import annotations

import contextlib
import os
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from cryostash import CheckpointManager, Settings
from tests.support import postgres
from tests.support.stores import RawStore

#: The shapes every integrity test runs against.
SHAPES = ["local-sqlite", "s3-postgresql"]


@dataclass
class Setup:
    """One store, one catalog, one scratch folder (see the module docstring)."""

    shape: str
    store_url: str
    catalog_url: str
    scratch: Path
    storage_options: dict[str, Any] = field(default_factory=dict)
    aws_env: dict[str, str] = field(default_factory=dict)
    cleanup: Callable[[], None] = lambda: None
    new_database: Callable[[], str] | None = None

    @property
    def raw(self) -> RawStore:
        """Raw access to the store's objects, bypassing cryostash."""
        if "://" not in self.store_url:
            from fsspec.implementations.local import LocalFileSystem

            return RawStore(LocalFileSystem(), self.store_url)
        import s3fs

        fs = s3fs.S3FileSystem(**self.storage_options)
        return RawStore(fs, self.store_url.removeprefix("s3://"))

    def settings(self, criu: str | None = None, host: str = "host-a") -> Settings:
        """Settings for an in-process manager."""
        return Settings(
            store_url=self.store_url,
            catalog_url=self.catalog_url,
            scratch_dir=self.scratch,
            host=host,
            criu_path=criu,
            storage_options=dict(self.storage_options),
        )

    def manager(
        self, cls: type[CheckpointManager] = CheckpointManager, criu: str | None = None
    ) -> CheckpointManager:
        """A new in-process manager on this setup (close it, or use ``with``)."""
        return cls(self.settings(criu))

    def cli_env(self, criu: str | None = None, config: Path | None = None) -> dict[str, str]:
        """The environment of a ``cryostash`` subprocess on this setup."""
        env = {k: v for k, v in os.environ.items() if not k.startswith("CRYOSTASH_")}
        env.update(self.aws_env)
        env.update(
            {
                "CRYOSTASH_STORE": self.store_url,
                "CRYOSTASH_CATALOG": self.catalog_url,
                "CRYOSTASH_SCRATCH": str(self.scratch),
                "CRYOSTASH_HOST": "host-a",
                "CRYOSTASH_CONFIG": str(config or os.devnull),
                # No chunk cache: never the machine's own (DATA/cache), and every
                # restore reads the store (the tests damage the store, not a cache).
                "CRYOSTASH_CACHE": "none",
            }
        )
        if criu:
            env["CRYOSTASH_CRIU"] = criu
        return env

    def lose_catalog(self) -> None:
        """Lose the catalog database (delete the SQLite file; switch to a new, empty
        PostgreSQL database): what ``catalog rebuild`` recovers from."""
        if self.new_database is not None:
            self.catalog_url = self.new_database()
            return
        path = Path(self.catalog_url.removeprefix("sqlite:///"))
        for suffix in ("", "-wal", "-shm"):
            Path(f"{path}{suffix}").unlink(missing_ok=True)

    def expire_leases(self) -> int:
        """Make every PENDING row's lease expired (as if its creator died long ago)."""
        from sqlalchemy import update
        from sqlalchemy.orm import Session

        from cryostash.catalog.database import create_catalog_engine
        from cryostash.catalog.models import CheckpointRow

        engine = create_catalog_engine(self.catalog_url)
        try:
            with Session(engine) as session, session.begin():
                done = session.execute(
                    update(CheckpointRow)
                    .where(CheckpointRow.status == "pending")
                    .values(lease_expires_at=datetime(2000, 1, 1, tzinfo=UTC))
                )
                return int(getattr(done, "rowcount", 0) or 0)
        finally:
            engine.dispose()

    def expected_objects(self) -> set[str]:
        """The objects the store should hold: the manifest of every listed checkpoint and
        the blobs it names (compare with ``self.raw.files()``)."""
        from cryostash.store import Manifest

        want: set[str] = set()
        with self.manager() as mgr:
            for info in mgr.list():
                data = mgr.store().manifests.read(info.target, info.name)
                want.add(f"checkpoints/{info.target}/{info.name}/manifest.json")
                want |= {f"blobs/{d[:2]}/{d}" for d in Manifest.from_bytes(data).blob_digests}
        return want


def make_setup(
    shape: str,
    workdir: Path,
    *,
    moto: dict[str, Any] | None = None,
    pg: postgres.PostgresServer | None = None,
) -> Setup:
    """Build a fresh setup of ``shape`` under ``workdir`` (needs ``moto``/``pg`` for S3)."""
    scratch = workdir / "scratch"
    if shape == "local-sqlite":
        return Setup(shape, str(workdir / "store"), f"sqlite:///{workdir / 'catalog.db'}", scratch)
    if shape == "s3-postgresql":
        assert moto is not None and pg is not None
        import s3fs

        fs = s3fs.S3FileSystem(**moto)
        bucket = f"cryostash-it-{uuid.uuid4().hex[:12]}"
        fs.mkdir(bucket)

        def drop_bucket() -> None:
            fs.invalidate_cache()
            with contextlib.suppress(Exception):
                fs.rm(bucket, recursive=True)

        aws = {
            "AWS_ENDPOINT_URL": str(moto["endpoint_url"]),
            "AWS_ACCESS_KEY_ID": str(moto["key"]),
            "AWS_SECRET_ACCESS_KEY": str(moto["secret"]),
        }
        return Setup(
            shape,
            f"s3://{bucket}/root",
            pg.create_database(),
            scratch,
            storage_options=dict(moto),
            aws_env=aws,
            cleanup=drop_bucket,
            new_database=pg.create_database,
        )
    raise ValueError(f"unknown setup shape {shape!r}")


@pytest.fixture(params=SHAPES, name="setup")
def setup_fixture(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Setup]:
    """Each shape in turn, fresh for this test."""
    shape = str(request.param)
    moto = request.getfixturevalue("moto_endpoint") if shape.startswith("s3") else None
    pg = request.getfixturevalue("pg_server") if shape.endswith("postgresql") else None
    made = make_setup(shape, tmp_path / "cs", moto=moto, pg=pg)
    try:
        yield made
    finally:
        made.cleanup()
