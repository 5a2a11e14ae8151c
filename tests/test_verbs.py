"""``operations.VERBS``: every verb is one operation over a Repository and a frozen request
of plain data (what a front end decoding JSON can build)."""

from __future__ import annotations

import dataclasses
import enum
import inspect
import types
import typing

from cryostash.operations import VERBS
from cryostash.repository import Repository

#: What a request field may hold, once ``X | None`` is unwrapped.
PLAIN = (str, int, float, bool, type(None), tuple, dict, list)


def _plain(hint: object) -> bool:
    origin = typing.get_origin(hint)
    if origin in (typing.Union, types.UnionType):
        return all(_plain(arg) for arg in typing.get_args(hint))
    if origin is not None:
        return origin in PLAIN and all(
            _plain(arg) for arg in typing.get_args(hint) if arg is not Ellipsis
        )
    if isinstance(hint, type) and issubclass(hint, (*PLAIN, enum.Enum)):
        return True
    return dataclasses.is_dataclass(hint) and all(
        _plain(h) for h in typing.get_type_hints(hint).values()
    )


def test_every_verb_takes_a_repository_and_a_frozen_request_of_plain_data() -> None:
    assert len(VERBS) >= 19
    for name, verb in VERBS.items():
        assert dataclasses.is_dataclass(verb.request), name
        assert verb.request.__dataclass_params__.frozen, name  # type: ignore[attr-defined]
        first, second = list(inspect.signature(verb.function).parameters.values())[:2]
        assert first.annotation == Repository.__name__, name  # postponed: the written name
        assert second.annotation == verb.request.__name__, name
        hints = typing.get_type_hints(verb.request)
        # CheckpointFilter's ``since`` is a datetime (an ISO-8601 string in JSON).
        mixed = [f for f, h in hints.items() if not _plain(h) and f != "filters"]
        assert not mixed, f"{name}: fields not plain data: {mixed}"
