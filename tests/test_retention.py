"""Retention policies as pure values: each rule, their union, ordering, JSON, durations.

No store, no catalog: checkpoints are hand-made ``CheckpointInfo`` values with crafted
commit times. ``test_prune.py`` applies the same policies to real stores and catalogs.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from datetime import UTC, datetime, timedelta

import pytest

from cryostash.errors import UsageError
from cryostash.retention import (
    KeepLabel,
    KeepLast,
    KeepWithin,
    Kept,
    Policy,
    newest_first,
)
from cryostash.types import CheckpointInfo, Status

T0 = datetime(2026, 1, 1, tzinfo=UTC)


def cp(
    ident: int,
    hours: float,
    *,
    target: str = "web",
    labels: dict[str, str] | None = None,
    status: Status = Status.COMMITTED,
    store: str = "/s",
) -> CheckpointInfo:
    """Checkpoint ``cp<ident>`` of ``target`` committed ``hours`` after T0."""
    at = T0 + timedelta(hours=hours)
    return CheckpointInfo(
        id=ident, store_url=store, target=target, name=f"cp{ident}", status=status,
        host="h", engine="fake", engine_version=None, created_at=at,
        committed_at=at if status is Status.COMMITTED else None, size_bytes=1,
        labels=labels or {}, stats={},
    )  # fmt: skip


def names(items: Iterable[Kept | CheckpointInfo]) -> list[str]:
    return [i.checkpoint.name if isinstance(i, Kept) else i.name for i in items]


def reasons(policy: Policy, checkpoints: list[CheckpointInfo]) -> dict[str, tuple[str, ...]]:
    return {k.checkpoint.name: k.reasons for k in policy.apply(checkpoints).kept}


# -- durations --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "seconds"),
    [("90m", 5400), ("12h", 43200), ("7d", 604800), ("2w", 1209600), ("1d12h", 129600),
     ("30s", 30), (" 7D ", 604800), ("1w1d1h1m1s", 694861), ("1.5d", 129600), ("7", 7),
     ("0.5", 0.5)],
)  # fmt: skip
def test_durations_parse(text: str, seconds: float) -> None:
    """--keep-within reads the one duration grammar (cryostash.units.parse_duration)."""
    assert KeepWithin(text).seconds == seconds


@pytest.mark.parametrize(
    ("text", "why"),
    [("7x", "expected seconds or numbers with a unit"),
     ("-1d", "expected seconds or numbers with a unit"),
     ("0", "must be longer than 0"), ("0d", "must be longer than 0"),
     ("0h0m", "must be longer than 0"), ("", "expected"), ("d", "expected"),
     ("7d 1h", "expected"), ("+1d", "expected"), ("nan", "expected"), ("inf", "expected")],
)  # fmt: skip
def test_bad_durations_are_refused(text: str, why: str) -> None:
    with pytest.raises(UsageError) as err:
        KeepWithin(text)
    assert str(err.value).startswith(f"invalid duration {text!r}: ")
    assert why in str(err.value)


# -- each rule ----------------------------------------------------------------------------


def test_keep_last_keeps_the_newest_n() -> None:
    cps = [cp(1, 0), cp(2, 1), cp(3, 2), cp(4, 3), cp(5, 4)]
    decision = Policy((KeepLast(2),)).apply(cps)
    assert names(decision.kept) == ["cp5", "cp4"]  # newest first
    assert names(decision.removed) == ["cp3", "cp2", "cp1"]
    assert all(k.reasons == ("last 2",) for k in decision.kept)


def test_keep_last_larger_than_the_count_keeps_everything() -> None:
    cps = [cp(1, 0), cp(2, 1)]
    decision = Policy((KeepLast(10),)).apply(cps)
    assert names(decision.kept) == ["cp2", "cp1"] and decision.removed == ()


def test_keep_last_breaks_ties_on_time_by_id() -> None:
    cps = [cp(7, 5), cp(3, 5), cp(9, 5), cp(1, 4)]  # three at the same instant
    decision = Policy((KeepLast(2),)).apply(cps)
    assert names(decision.kept) == ["cp9", "cp7"]
    assert names(decision.removed) == ["cp3", "cp1"]


def test_order_is_creation_time_not_name_or_commit_time() -> None:
    late_created_early = cp(1, 10)
    early = cp(2, 1)
    committed_last = CheckpointInfo(
        **{**early.__dict__, "id": 3, "name": "aaa", "created_at": T0,
           "committed_at": T0 + timedelta(hours=20)}
    )  # fmt: skip
    assert names(newest_first([early, late_created_early, committed_last])) == [
        "cp1", "cp2", "aaa",
    ]


def test_keep_within_counts_from_the_newest_checkpoint_not_now() -> None:
    # checkpoints stopped long ago: the window still ends at the newest one
    cps = [cp(1, 0), cp(2, 24), cp(3, 47), cp(4, 48), cp(5, 72)]
    decision = Policy((KeepWithin("1d"),)).apply(cps)
    assert names(decision.kept) == ["cp5", "cp4"]  # 72h and 48h: exactly 1d is kept
    assert names(decision.removed) == ["cp3", "cp2", "cp1"]
    assert decision.kept[0].reasons == ("within 1d",)


def test_keep_within_compound_duration() -> None:
    cps = [cp(1, 0), cp(2, 10), cp(3, 30), cp(4, 46)]
    decision = Policy((KeepWithin("1d12h"),)).apply(cps)  # 36h before 46h: from 10h
    assert names(decision.kept) == ["cp4", "cp3", "cp2"]
    assert names(decision.removed) == ["cp1"]


def test_keep_label_keeps_exact_matches_only() -> None:
    cps = [
        cp(1, 0, labels={"env": "prod"}),
        cp(2, 1, labels={"env": "staging"}),
        cp(3, 2, labels={"env": "prod", "x": "y"}),
        cp(4, 3, labels={"envx": "prod"}),
        cp(5, 4),
    ]
    decision = Policy((KeepLabel("env", "prod"),)).apply(cps)
    assert names(decision.kept) == ["cp3", "cp1"]
    assert names(decision.removed) == ["cp5", "cp4", "cp2"]
    assert decision.kept[0].reasons == ("label env=prod",)


def test_keep_label_with_an_empty_value() -> None:
    cps = [cp(1, 0, labels={"pin": ""}), cp(2, 1, labels={"pin": "no"})]
    assert names(Policy((KeepLabel.parse("pin="),)).apply(cps).kept) == ["cp1"]


# -- union --------------------------------------------------------------------------------


def test_union_keeps_what_any_rule_keeps_with_every_reason() -> None:
    cps = [
        cp(1, 0, labels={"env": "prod"}),
        cp(2, 10),
        cp(3, 30),
        cp(4, 40, labels={"env": "prod"}),
        cp(5, 47),
        cp(6, 48),
    ]
    policy = Policy.of(keep_last=2, keep_within="12h", keep_labels=["env=prod"])
    assert policy is not None
    assert reasons(policy, cps) == {
        "cp6": ("last 2", "within 12h"),
        "cp5": ("last 2", "within 12h"),
        "cp4": ("within 12h", "label env=prod"),
        "cp1": ("label env=prod",),
    }
    assert names(policy.apply(cps).removed) == ["cp3", "cp2"]


def test_targets_are_decided_separately() -> None:
    cps = [
        cp(1, 0, target="a"), cp(2, 1, target="a"), cp(3, 100, target="b"),
        cp(4, 2, target="a"), cp(5, 50, target="b"), cp(6, 0, target="b", store="/t"),
    ]  # fmt: skip
    decision = Policy((KeepLast(1), KeepWithin("1h"))).apply(cps)
    # a's newest is cp4 (2h): within 1h keeps cp2 (1h); b's newest is cp3 (100h) only;
    # the same target name in another store is another target
    assert names(decision.kept) == ["cp4", "cp2", "cp3", "cp6"]
    assert names(decision.removed) == ["cp1", "cp5"]


def test_pending_checkpoints_are_neither_kept_nor_removed() -> None:
    cps = [cp(1, 0), cp(2, 1), cp(3, 99, status=Status.PENDING)]
    decision = Policy((KeepLast(1),)).apply(cps)
    assert names(decision.kept) == ["cp2"]  # the pending newer one does not count
    assert names(decision.removed) == ["cp1"]


def test_no_checkpoints() -> None:
    decision = Policy((KeepWithin("1d"), KeepLast(3))).apply([])
    assert decision.kept == () and decision.removed == ()


# -- construction and JSON -----------------------------------------------------------------


@pytest.mark.parametrize("n", [0, -1, True, 1.5, "3"])
def test_keep_last_needs_a_whole_number_of_at_least_one(n: object) -> None:
    with pytest.raises(UsageError, match="expected a whole number >= 1"):
        KeepLast(n)  # type: ignore[arg-type]


@pytest.mark.parametrize("text", ["env", "=prod", ""])
def test_keep_label_needs_key_equals_value(text: str) -> None:
    with pytest.raises(UsageError, match=f"invalid label {text!r}: expected KEY=VALUE"):
        KeepLabel.parse(text)


def test_policy_needs_a_rule_and_no_duplicates() -> None:
    assert Policy.of() is None
    with pytest.raises(UsageError, match="at least one rule"):
        Policy(())
    with pytest.raises(UsageError, match="at most one keep-last"):
        Policy((KeepLast(1), KeepLast(2)))
    with pytest.raises(UsageError, match="at most one keep-within"):
        Policy((KeepWithin("1d"), KeepWithin("2d")))
    with pytest.raises(UsageError, match="same rule twice"):
        Policy((KeepLabel("a", "b"), KeepLabel("a", "b")))
    policy = Policy.of(keep_labels=["a=b", "a=b", "a=c"])
    assert policy is not None and [r.text for r in policy.keep_labels] == ["a=b", "a=c"]
    assert not policy.keeps_newest
    assert Policy((KeepWithin("1d"),)).keeps_newest and Policy((KeepLast(1),)).keeps_newest


def test_json_round_trip() -> None:
    policy = Policy.of(keep_last=3, keep_within="7D", keep_labels=["env=prod", "k=a=b"])
    assert policy is not None
    data = policy.to_dict()
    assert data == {"keep_last": 3, "keep_within": "7d", "keep_labels": ["env=prod", "k=a=b"]}
    again = Policy.from_dict(json.loads(json.dumps(data)))
    assert again == policy
    assert again.describe() == (
        "--keep-last 3 --keep-within 7d --keep-label env=prod --keep-label k=a=b"
    )
    assert Policy.from_dict({"keep_within": "2w"}) == Policy((KeepWithin("2w"),))


@pytest.mark.parametrize(
    ("data", "why"),
    [({}, "at least one rule"), ({"keep_last": None}, "at least one rule"),
     ({"keep_last": 0}, "whole number"), ({"keep_last": "2"}, "whole number"),
     ({"keep_within": "7x"}, "invalid duration"), ({"keep_within": 7}, "invalid duration"),
     ({"keep_labels": "a=b"}, "must be a list"), ({"keep_labels": ["ab"]}, "invalid label"),
     ({"keep_first": 1}, "unknown keys keep_first"), ([1], "expected a JSON object")],
)  # fmt: skip
def test_bad_json_is_refused(data: object, why: str) -> None:
    with pytest.raises(UsageError, match=why):
        Policy.from_dict(data)  # type: ignore[arg-type]


def test_policies_are_frozen_values() -> None:
    policy = Policy((KeepLast(2), KeepWithin("1d")))
    assert policy == Policy((KeepLast(2), KeepWithin("1d")))
    assert hash(policy) == hash(Policy((KeepLast(2), KeepWithin("1d"))))
    with pytest.raises(AttributeError):
        policy.rules = ()  # type: ignore[misc]
