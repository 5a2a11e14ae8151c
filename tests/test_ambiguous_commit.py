"""A commit whose outcome is unknown never loses the manifest; gc settles the row.

The catalog is a real PostgreSQL database on the session's private server; "the
connection dropped" is real: every backend of the database is terminated and new
connections refused (``ALLOW_CONNECTIONS false``) at a phase of the create, so the
failed create's clean-up cannot ask the catalog what happened. Two cases:

- after the commit was applied (the reply is what got lost): the row is committed and
  the manifest must still be there;
- before the commit reached the server: the row stays pending; ``gc`` (after the lease)
  finds the whole manifest and commits it.

Either way ``gc`` ends with one consistent committed checkpoint that restores exactly.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import create_engine
from sqlalchemy.engine import make_url

from cryostash import CatalogError, collect_garbage, hooks, verify_store
from tests.support import postgres
from tests.support.fake_engine import FakeManager, make_image, read_tree
from tests.support.setups import Setup, make_setup

LATER = datetime.now(UTC) + timedelta(days=3)  # every lease expired


@pytest.fixture
def pg_setup(tmp_path: Path, pg_server: postgres.PostgresServer) -> Iterator[Setup]:
    """A local store and a fresh PostgreSQL catalog."""
    made = make_setup("local-sqlite", tmp_path / "cs")
    made.catalog_url = pg_server.create_database()
    yield made


def _cut_off(admin_url: str, catalog_url: str, *, allow: bool) -> None:
    """Refuse (``allow=False``: and drop every open connection) or allow connections to
    the catalog's database."""
    database = make_url(catalog_url).database
    engine = create_engine(admin_url, isolation_level="AUTOCOMMIT")
    try:
        with engine.connect() as conn:
            conn.exec_driver_sql(
                f'ALTER DATABASE "{database}" ALLOW_CONNECTIONS {str(allow).lower()}'
            )
            if not allow:
                conn.exec_driver_sql(
                    "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                    f"WHERE datname = '{database}' AND pid <> pg_backend_pid()"
                )
    finally:
        engine.dispose()


@pytest.mark.parametrize("phase", ["after-commit", "after-manifest"])
def test_unknown_commit_outcome_keeps_the_manifest_and_gc_settles_it(
    pg_setup: Setup, pg_server: postgres.PostgresServer, tmp_path: Path, phase: str
) -> None:
    files = make_image(tmp_path / "img")

    def drop_connection(at: str) -> None:
        if at != phase:
            return
        _cut_off(pg_server.admin_url, pg_setup.catalog_url, allow=False)
        if phase == "after-commit":  # applied; the client never hears so
            raise CatalogError("catalog: server closed the connection unexpectedly")

    manifest = pg_setup.raw.manifest("app", "cp")
    try:
        with pg_setup.manager(FakeManager) as mgr, hooks.observe(drop_connection):
            with pytest.raises(CatalogError):
                mgr.create("app", "cp", locator=str(tmp_path / "img"))
            assert pg_setup.raw.exists(manifest), "the manifest was deleted"
    finally:
        _cut_off(pg_server.admin_url, pg_setup.catalog_url, allow=True)

    with pg_setup.manager(FakeManager) as mgr:
        report = collect_garbage(mgr.repository, grace_s=0, now=LATER)
        assert report.ok, report.errors
        assert report.committed == (("app/cp",) if phase == "after-manifest" else ())
        assert not report.aborted
        assert [(i.target, i.name, i.status.value) for i in mgr.list()] == [
            ("app", "cp", "committed")
        ]
        assert verify_store(mgr.repository, read_data=True).ok
        mgr.restore("app", "cp", engine_args=[str(tmp_path / "back")])
    assert read_tree(tmp_path / "back") == files
