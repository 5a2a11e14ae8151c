"""``--latest`` and the checkpoint filters (``--label``, ``--host``, ``--since``) through the
real ``cryostash`` command, on a local store with SQLite and on S3 with PostgreSQL.

The checkpoints are made in-process with the fake engine (tests/support/fake_engine.py:
a checkpoint is a copy of a folder); their creation and commit times are then set in the
catalog behind cryostash's back, so that ages and orders are exact without waiting. The
real CRIU restore with ``--latest`` is in tests/test_prefetch.py.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

import pytest
from sqlalchemy import update
from sqlalchemy.orm import Session

from cryostash.catalog.database import create_catalog_engine
from cryostash.catalog.models import CheckpointRow
from cryostash.cli.filters import parse_since
from cryostash.errors import CheckpointNotFound, UsageError
from cryostash.types import CheckpointFilter
from tests.support import cli
from tests.support.fake_engine import FakeManager, make_image
from tests.support.setups import Setup, setup_fixture  # noqa: F401

NOW = datetime.now(UTC)

#: name -> (target, host, labels, created this long ago, committed this long ago).
#: "slow" was created first but committed last: still the oldest (creation time orders).
CHECKPOINTS = {
    "n1": ("web", "host-a", {"tier": "web", "env": "prod"}, timedelta(hours=5), timedelta(hours=5)),
    "n2": ("web", "host-b", {"tier": "web", "env": "prod"}, timedelta(hours=3), timedelta(hours=3)),
    "n3": ("web", "host-a", {"tier": "web", "env": "test"}, timedelta(hours=2), timedelta(hours=2)),
    "slow": ("web", "host-b", {"tier": "db"}, timedelta(hours=6), timedelta(minutes=20)),
    "n4": ("db", "host-a", {"tier": "web", "env": "prod"}, timedelta(hours=1), timedelta(hours=1)),
}


def make_checkpoints(setup: Setup, tmp_path: Path) -> None:
    """Create :data:`CHECKPOINTS` (fake engine), then set their times in the catalog."""
    make_image(tmp_path / "image")
    for name, (target, host, labels, _, _) in CHECKPOINTS.items():
        with FakeManager(setup.settings(host=host)) as mgr:
            mgr.create(target, name, locator=str(tmp_path / "image"), labels=labels)
    engine = create_catalog_engine(setup.catalog_url)
    try:
        with Session(engine) as session, session.begin():
            for name, (target, _, _, created, committed) in CHECKPOINTS.items():
                session.execute(
                    update(CheckpointRow)
                    .where(CheckpointRow.target == target, CheckpointRow.name == name)
                    .values(created_at=NOW - created, committed_at=NOW - committed)
                )
    finally:
        engine.dispose()


def test_ls_filters_and_latest_pick_the_matching_checkpoints(
    setup: Setup, tmp_path: Path
) -> None:
    make_checkpoints(setup, tmp_path)
    env = setup.cli_env()

    def ls(*args: str) -> list[tuple[str, str]]:
        listed = json.loads(cli.run(["ls", *args, "--json"], env).stdout)
        return [(i["target"], i["name"]) for i in listed]

    # Every label must match; --host is the creating host; --since the creation time
    # (a duration back from now, or an ISO time, here with an offset).
    assert ls("--label", "tier=web", "--label", "env=prod") == [
        ("db", "n4"), ("web", "n1"), ("web", "n2"),
    ]
    assert ls("--label", "env=prod", "--host", "host-a", "--since", "4h") == [("db", "n4")]
    since = (NOW - timedelta(hours=4)).astimezone(timezone(timedelta(hours=2))).isoformat()
    text = cli.run(["ls", "web", "--host", "host-b", "--since", since], env).stdout
    assert text.splitlines() == ["CHECKPOINT NAME", "n2"]

    # --latest: the newest by creation time (not "slow", committed last), or the newest
    # matching the filters.
    def latest(*args: str) -> str:
        shown = json.loads(cli.run(["inspect", "web", "--latest", *args, "--json"], env).stdout)
        assert shown["target"] == "web"
        return str(shown["name"])

    assert latest() == "n3"
    assert latest("--host", "host-b") == "n2"
    assert latest("--label", "tier=db") == "slow"
    none = cli.run(
        ["inspect", "web", "--latest", "--label", "env=prod", "--since", "1h"], env, check=False
    )
    assert none.returncode == 3
    assert "no checkpoint of container web matches (label env=prod, since " in none.stderr

    # The same through the library, with a label key SQLite's JSON paths cannot quote.
    with FakeManager(setup.settings()) as mgr:
        mgr.create("odd", "q1", locator=str(tmp_path / "image"), labels={'a"b.c': "x y"})
        mgr.create("odd", "q2", locator=str(tmp_path / "image"), labels={"a": "x y"})
        assert mgr.latest("odd", CheckpointFilter(labels={'a"b.c': "x y"})).name == "q1"
        assert [i.name for i in mgr.list("odd", filters=CheckpointFilter(labels={"a": "x y"}))] == [
            "q2"
        ]
        assert mgr.latest("odd").name == "q2"
        only = CheckpointFilter(labels={"env": "prod"}, host="host-a")
        assert mgr.latest("web", only).name == "n1"
        assert [i.name for i in mgr.list(filters=CheckpointFilter(host="host-b"))] == [
            "n2", "slow",
        ]
        with pytest.raises(CheckpointNotFound, match="no checkpoint of container zz exists"):
            mgr.latest("zz")


def test_name_and_latest_are_exclusive_and_bad_filters_are_usage_errors(
    tmp_path: Path,
) -> None:
    env = cli.host_env(tmp_path)
    cases = {
        ("inspect", "web", "n1", "--latest"): "give either NAME (n1) or --latest, not both",
        ("restore", "web"): "give the checkpoint's NAME, or --latest",
        ("prefetch", "web", "n1", "--host", "h1"): "--label, --host and --since choose",
        ("ls", "--since", "yesterday"): "invalid --since 'yesterday'",
        ("ls", "--since", "90"): "invalid --since '90'",
        ("restore", "web", "--latest", "--label", "tier"): "invalid label 'tier'",
    }
    for args, message in cases.items():
        done = cli.run(list(args), env, check=False)
        assert done.returncode == 2, (args, done.stderr)
        assert message in done.stderr, (args, done.stderr)


def test_since_takes_iso_times_and_durations() -> None:
    now = datetime(2026, 11, 28, 12, 0, tzinfo=UTC)
    assert parse_since("10m", now) == now - timedelta(minutes=10)
    assert parse_since("1h30m", now) == now - timedelta(hours=1, minutes=30)
    assert parse_since("2w", now) == now - timedelta(weeks=2)
    assert parse_since("2026-11-28T09:00:00") == datetime(2026, 11, 28, 9, tzinfo=UTC)
    assert parse_since("2026-11-28T09:00:00+02:00") == datetime(2026, 11, 28, 7, tzinfo=UTC)
    assert parse_since("2026-11-28T09:00:00Z") == datetime(2026, 11, 28, 9, tzinfo=UTC)
    assert parse_since("2026-11-28") == datetime(2026, 11, 28, tzinfo=UTC)
    for bad in ("", "10", "10x", "h", "-5m", "1h 30m", "99999999999w"):
        with pytest.raises(UsageError, match="invalid --since"):
            parse_since(bad, now)
