"""Catalog schema revisions: creation at head, upgrade/downgrade, drift, refusal.

Runs on a real SQLite file and on a private PostgreSQL server.
"""

from __future__ import annotations

import multiprocessing
import os
import subprocess
import sys
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import create_engine, inspect, text

from cryostash.catalog import Catalog, schema
from cryostash.catalog.models import Base
from cryostash.errors import CatalogError, SchemaOutdated
from cryostash.urls import redact_db_url
from tests.support import postgres

REPO = Path(__file__).resolve().parent.parent
TABLES = {"checkpoints", "blobs", "checkpoint_blobs", "events", "retention_policies"}


@pytest.fixture(scope="session")
def pg_server() -> Iterator[postgres.PostgresServer]:
    yield from postgres.session_server()


def _new_url(kind: str, tmp_path: Path, request: pytest.FixtureRequest, name: str) -> str:
    if kind == "sqlite":
        return f"sqlite:///{tmp_path / name}"
    server: postgres.PostgresServer = request.getfixturevalue("pg_server")
    return server.create_database()


@pytest.fixture(params=["sqlite", "postgresql"])
def backend(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def db_url(backend: str, tmp_path: Path, request: pytest.FixtureRequest) -> str:
    return _new_url(backend, tmp_path, request, "catalog.db")


@pytest.fixture
def other_url(backend: str, tmp_path: Path, request: pytest.FixtureRequest) -> str:
    return _new_url(backend, tmp_path, request, "other.db")


def table_names(url: str) -> set[str]:
    engine = create_engine(url)
    try:
        return set(inspect(engine).get_table_names())
    finally:
        engine.dispose()


def set_version(url: str, revision: str | None) -> None:
    engine = create_engine(url)
    try:
        with engine.begin() as conn:
            conn.execute(text("DELETE FROM alembic_version"))
            if revision is not None:
                conn.execute(text("INSERT INTO alembic_version VALUES (:r)"), {"r": revision})
    finally:
        engine.dispose()


def snapshot(url: str) -> dict[str, Any]:
    """Everything the database says about the catalog tables (for equality)."""
    engine = create_engine(url)
    try:
        insp = inspect(engine)
        out: dict[str, Any] = {}
        for table in sorted(insp.get_table_names()):
            out[table] = {
                "columns": [
                    (c["name"], str(c["type"]), c["nullable"], str(c.get("default")))
                    for c in insp.get_columns(table)
                ],
                "pk": insp.get_pk_constraint(table),
                "fks": insp.get_foreign_keys(table),
                "indexes": sorted(insp.get_indexes(table), key=lambda i: str(i["name"])),
                "uniques": sorted(insp.get_unique_constraints(table), key=lambda u: str(u["name"])),
                "checks": sorted(insp.get_check_constraints(table), key=lambda c: str(c["name"])),
            }
        if engine.dialect.name == "sqlite":
            with engine.connect() as conn:
                rows = conn.execute(text("SELECT name, sql FROM sqlite_master WHERE type='table'"))
                for name, sql in rows:
                    if name in out:
                        out[name]["autoincrement"] = "AUTOINCREMENT" in sql
        return out
    finally:
        engine.dispose()


def compare_with_models(url: str) -> list[Any]:
    from alembic.autogenerate import compare_metadata
    from alembic.migration import MigrationContext

    engine = create_engine(url)
    try:
        with engine.connect() as conn:
            context = MigrationContext.configure(conn, opts={"compare_type": True})
            return list(compare_metadata(context, Base.metadata))
    finally:
        engine.dispose()


# -- revisions -----------------------------------------------------------------------


def test_head_constant_matches_the_migrations() -> None:
    from alembic.script import ScriptDirectory

    assert schema.script_heads() == [schema.HEAD_REVISION]
    scripts = ScriptDirectory.from_config(schema.alembic_config())
    oldest_first = [s.revision for s in reversed(list(scripts.walk_revisions()))]
    assert tuple(oldest_first) == schema.KNOWN_REVISIONS
    assert schema.KNOWN_REVISIONS[-1] == schema.HEAD_REVISION


def test_migrations_found_in_the_checkout() -> None:
    assert schema.migrations_dir() == REPO / "migrations"


def test_migrations_found_in_an_installed_wheel_layout(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    package = tmp_path / "site-packages" / "cryostash"
    (package / "migrations").mkdir(parents=True)
    (package / "migrations" / "env.py").write_text("")
    monkeypatch.setattr(schema, "__file__", str(package / "catalog" / "schema.py"))
    assert schema.migrations_dir() == package / "migrations"
    (package / "migrations" / "env.py").unlink()
    with pytest.raises(CatalogError, match="cannot find the catalog migrations"):
        schema.migrations_dir()


@pytest.mark.slow
def test_built_wheel_ships_and_uses_the_migrations(tmp_path: Path) -> None:
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", str(tmp_path), str(REPO)],
        check=True,
        capture_output=True,
    )
    (wheel,) = tmp_path.glob("cryostash-*.whl")
    site = tmp_path / "site"
    with zipfile.ZipFile(wheel) as zf:
        names = zf.namelist()
        zf.extractall(site)
    assert "cryostash/migrations/env.py" in names
    assert "cryostash/migrations/script.py.mako" in names
    assert "cryostash/migrations/versions/0001_initial.py" in names
    assert "cryostash/migrations/versions/0002_retention_policies.py" in names
    code = (
        "import sys, cryostash; from cryostash.catalog import schema;"
        f"assert cryostash.__file__.startswith({str(site)!r}), cryostash.__file__;"
        "print(schema.migrations_dir());"
        f"schema.upgrade({'sqlite:///' + str(tmp_path / 'w.db')!r});"
        f"print(schema.current({'sqlite:///' + str(tmp_path / 'w.db')!r}))"
    )
    env = {**os.environ, "PYTHONPATH": str(site)}
    out = subprocess.run(
        [sys.executable, "-c", code], check=True, capture_output=True, text=True, env=env
    ).stdout.split()
    assert out == [str(site / "cryostash" / "migrations"), schema.HEAD_REVISION]


def test_import_and_open_do_not_import_alembic(tmp_path: Path) -> None:
    code = (
        "import sys, cryostash.catalog as c;"
        "assert 'alembic' not in sys.modules, 'import';"
        f"cat = c.Catalog({'sqlite:///' + str(tmp_path / 'n.db')!r}); cat.close();"
        f"cat = c.Catalog({'sqlite:///' + str(tmp_path / 'n.db')!r}); cat.close();"
        f"assert c.current({'sqlite:///' + str(tmp_path / 'n.db')!r}) == c.HEAD_REVISION;"
        "assert 'alembic' not in sys.modules, 'open'"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


# -- creation, upgrade, downgrade -----------------------------------------------------------


def test_new_database_is_created_at_head(db_url: str) -> None:
    assert schema.current(db_url) is None
    Catalog(db_url).close()
    assert schema.current(db_url) == schema.HEAD_REVISION
    assert table_names(db_url) >= TABLES
    assert compare_with_models(db_url) == []
    Catalog(db_url).close()  # and opens again


def test_created_database_equals_migrated_database(db_url: str, other_url: str) -> None:
    Catalog(db_url).close()  # create_all + stamp
    schema.upgrade(other_url)  # the migrations
    created, migrated = snapshot(db_url), snapshot(other_url)
    assert set(created) == TABLES | {"alembic_version"}
    assert created == migrated


def test_upgrade_empty_to_head_then_use(db_url: str) -> None:
    schema.upgrade(db_url)
    assert schema.current(db_url) == schema.HEAD_REVISION
    assert compare_with_models(db_url) == []
    schema.upgrade(db_url)  # idempotent
    with Catalog(db_url) as cat:
        info = cat.reserve(
            store_url="/s", target="t", name="n1", host="h", engine="criu", labels={},
            lease_seconds=5,
        )  # fmt: skip
        cat.commit(info.id, size_bytes=1, stats={}, engine_version=None, manifest_digest="d")
        assert [i.name for i in cat.list("/s")] == ["n1"]


def test_downgrade_to_base_and_up_again(db_url: str) -> None:
    Catalog(db_url).close()
    schema.downgrade(db_url, "base")
    assert schema.current(db_url) is None
    assert table_names(db_url) & TABLES == set()
    with pytest.raises(SchemaOutdated) as err:  # at base: never silently re-created
        Catalog(db_url)
    assert "is at schema revision base, this cryostash needs" in str(err.value)
    assert "run `cryostash db upgrade`" in str(err.value)
    schema.upgrade(db_url)
    assert schema.current(db_url) == schema.HEAD_REVISION
    assert compare_with_models(db_url) == []
    Catalog(db_url).close()


def test_downgrade_and_upgrade_to_explicit_revisions(db_url: str) -> None:
    schema.upgrade(db_url, schema.HEAD_REVISION)
    schema.downgrade(db_url, "base")
    schema.upgrade(db_url, schema.KNOWN_REVISIONS[0])
    assert schema.current(db_url) == schema.KNOWN_REVISIONS[0]
    with pytest.raises(CatalogError, match="cannot upgrade to nosuchrev"):
        schema.upgrade(db_url, "nosuchrev")


def test_a_0001_catalog_is_refused_then_upgraded_keeping_its_rows(
    db_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    from cryostash.catalog.policies import RetentionCatalog
    from cryostash.cli.app import run
    from cryostash.retention import KeepLast, Policy

    schema.upgrade(db_url, "0001")  # what cryostash 0.1 created
    assert "retention_policies" not in table_names(db_url)
    engine = create_engine(db_url)
    try:
        with engine.begin() as conn:
            conn.execute(
                text(
                    "INSERT INTO checkpoints (store_url, target, name, status, host, engine, "
                    "created_at, committed_at, size_bytes, labels, stats, manifest_digest) "
                    "VALUES ('/s', 't', 'old', 'committed', 'h', 'criu', :at, :at, 1, '{}', "
                    "'{}', 'd')"
                ),
                {"at": "2025-01-01 00:00:00"},
            )
    finally:
        engine.dispose()
    with pytest.raises(SchemaOutdated) as err:
        Catalog(db_url)
    assert str(err.value) == (
        f"catalog {redact_db_url(db_url)} is at schema revision 0001, this cryostash needs "
        f"{schema.HEAD_REVISION}: run `cryostash db upgrade`"
    )
    assert run(["--catalog", db_url, "db", "upgrade"]) == 0
    assert capsys.readouterr().out.split() == [schema.HEAD_REVISION]
    assert compare_with_models(db_url) == []
    with Catalog(db_url) as cat:
        assert [i.name for i in cat.list("/s")] == ["old"]
        policies = RetentionCatalog(cat)
        policies.set_default(store_url="/s", target="t", policy=Policy((KeepLast(2),)), host="h")
        stored = policies.default("/s", "t")
        assert stored is not None and stored.policy == Policy((KeepLast(2),))
    schema.downgrade(db_url, "0001")  # and back: the table goes, the rows stay
    assert "retention_policies" not in table_names(db_url)
    schema.upgrade(db_url)
    with Catalog(db_url) as cat:
        assert [i.name for i in cat.list("/s")] == ["old"]
        assert RetentionCatalog(cat).defaults("/s") == {}


def test_concurrent_creation_of_a_new_database(db_url: str) -> None:
    ctx = multiprocessing.get_context("spawn")
    with ctx.Pool(6) as pool:
        results = pool.map(_open_and_report, [db_url] * 6)
    assert results == ["ok"] * 6
    assert schema.current(db_url) == schema.HEAD_REVISION


def _open_and_report(url: str) -> str:
    try:
        Catalog(url).close()
        return "ok"
    except Exception as exc:
        return f"{type(exc).__name__}: {exc}"


# -- refusals ------------------------------------------------------------------------------


def test_older_revision_is_refused(db_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    Catalog(db_url).close()
    # this database is at the current head; pretend this cryostash needs a newer one
    monkeypatch.setattr(schema, "HEAD_REVISION", "0099")
    monkeypatch.setattr(schema, "KNOWN_REVISIONS", (*schema.KNOWN_REVISIONS, "0099"))
    with pytest.raises(SchemaOutdated) as err:
        Catalog(db_url)
    shown = redact_db_url(db_url)
    current = schema.KNOWN_REVISIONS[-2]
    assert str(err.value) == (
        f"catalog {shown} is at schema revision {current}, this cryostash needs 0099: "
        "run `cryostash db upgrade`"
    )
    assert isinstance(err.value, CatalogError)
    assert schema.current(db_url) == current  # current() never refuses


def test_outdated_message_hides_the_password(pg_server: postgres.PostgresServer) -> None:
    from sqlalchemy.engine import make_url

    url = make_url(pg_server.create_database()).set(password="hunter2")  # trust auth
    url_text = url.render_as_string(hide_password=False)
    Catalog(url_text).close()
    set_version(url_text, None)
    with pytest.raises(SchemaOutdated) as err:
        Catalog(url_text)
    assert "hunter2" not in str(err.value)
    assert ":***@" in str(err.value)


def test_unknown_revision_is_refused(db_url: str) -> None:
    Catalog(db_url).close()
    set_version(db_url, "ffff9999")
    with pytest.raises(SchemaOutdated) as err:
        Catalog(db_url)
    message = str(err.value)
    assert "is at schema revision ffff9999, unknown to this cryostash" in message
    assert f"which needs {schema.HEAD_REVISION}" in message
    assert "this cryostash is older than the catalog" in message
    assert schema.current(db_url) == "ffff9999"
    with pytest.raises(CatalogError, match="cannot upgrade to head"):
        schema.upgrade(db_url)


def test_tables_without_revision_are_refused(db_url: str) -> None:
    engine = create_engine(db_url)
    try:
        Base.metadata.create_all(engine)
    finally:
        engine.dispose()
    with pytest.raises(CatalogError, match="no alembic_version table"):
        Catalog(db_url)


def test_foreign_tables_are_left_alone(db_url: str) -> None:
    engine = create_engine(db_url)
    try:
        with engine.begin() as conn:
            conn.execute(text("CREATE TABLE someone_else (x INTEGER)"))
    finally:
        engine.dispose()
    Catalog(db_url).close()  # a database shared with other tables is fine
    assert schema.current(db_url) == schema.HEAD_REVISION
    assert "someone_else" in table_names(db_url)


def test_stamp(db_url: str) -> None:
    schema.upgrade(db_url)
    schema.stamp(db_url, "base")
    assert schema.current(db_url) is None
    schema.stamp(db_url, "head")
    assert schema.current(db_url) == schema.HEAD_REVISION
