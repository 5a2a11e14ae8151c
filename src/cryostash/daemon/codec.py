"""JSON to a verb's request, a verb's result to JSON and back.

:func:`decode_request` builds the frozen request dataclass of a verb
(:data:`cryostash.operations.VERBS`) from a JSON object, field by field from the
dataclass's type hints: ``str``, ``int``, ``float``, ``bool``, ``X | None``,
``tuple[X, ...]``, ``dict[str, X]`` / ``Mapping``, an enum (its value), a ``datetime``
(ISO-8601 text with an offset), a nested dataclass (a JSON object, same rules), or a type
with a ``from_dict`` class method (a retention ``Policy``). Unknown fields, missing
required fields and values of the wrong type are refused with
:class:`~cryostash.errors.UsageError` naming the field; the values themselves (names,
labels, ...) are then validated by the operation, exactly as for the command line.

:func:`encode` turns a result into JSON data: an object's ``as_dict()`` when it has one,
otherwise a dataclass's fields (recursively), enums as their value, datetimes as
ISO-8601 text, mappings as objects, sequences as arrays, paths as text, bytes as hex.
With ``fields=True`` every dataclass is its fields, never its ``as_dict()`` (lossless):
:func:`decode_result` turns that back into the typed result (the command line's client
presents what the daemon returns exactly as what the operation returns in process).
"""

from __future__ import annotations

import dataclasses
import enum
import types
import typing
from collections.abc import Mapping
from datetime import datetime
from pathlib import PurePath
from typing import Any

from cryostash.errors import UsageError


def decode_request(cls: type[Any], data: object, verb: str) -> Any:
    """The request ``cls`` (a dataclass) of ``verb`` built from the JSON value ``data``.

    Raises:
        UsageError: ``data`` is not an object, a field is unknown or missing, or a value
            does not have the field's type (the message names the verb and the field).
    """
    return _dataclass(cls, data, verb)


def decode_result(hint: Any, data: object, verb: str) -> Any:
    """The result of ``verb``, of type ``hint`` (the operation's return annotation), from
    its JSON form ``encode(result, fields=True)``.

    Raises:
        UsageError: ``data`` does not have that form (a daemon of another kind).
    """
    return _value(hint, data, f"{verb} result")


def _dataclass(cls: type[Any], data: object, where: str) -> Any:
    if not isinstance(data, dict):
        raise UsageError(f"{where}: expected a JSON object, got {_kind(data)}")
    fields = {f.name: f for f in dataclasses.fields(cls) if f.init}
    unknown = sorted(set(data) - set(fields))
    if unknown:
        raise UsageError(
            f"{where}: unknown field(s) {', '.join(map(repr, unknown))} "
            f"(known: {', '.join(fields) or 'none'})"
        )
    hints = typing.get_type_hints(cls)
    missing = [
        name
        for name, f in fields.items()
        if name not in data
        and f.default is dataclasses.MISSING
        and f.default_factory is dataclasses.MISSING
    ]
    if missing:
        raise UsageError(f"{where}: missing field(s) {', '.join(map(repr, missing))}")
    values = {name: _value(hints[name], value, f"{where}.{name}") for name, value in data.items()}
    return cls(**values)


def _value(hint: Any, value: object, where: str) -> Any:
    """``value`` (JSON) as the type ``hint``, or UsageError naming ``where``."""
    origin = typing.get_origin(hint)
    if origin in (typing.Union, types.UnionType):
        options = typing.get_args(hint)
        if value is None and type(None) in options:
            return None
        real = [o for o in options if o is not type(None)]
        if len(real) == 1:
            return _value(real[0], value, where)
        raise UsageError(f"{where}: this field cannot be given over the API")
    if origin in (tuple, list, frozenset, set):
        args = typing.get_args(hint)
        if not isinstance(value, list):
            raise UsageError(f"{where}: expected an array, got {_kind(value)}")
        item = args[0] if args else Any
        items = (_value(item, v, f"{where}[{i}]") for i, v in enumerate(value))
        return origin(items)
    if origin in (dict, Mapping) or hint in (dict, Mapping):
        args = typing.get_args(hint)
        if not isinstance(value, dict):
            raise UsageError(f"{where}: expected an object, got {_kind(value)}")
        item = args[1] if len(args) == 2 else Any
        return {str(k): _value(item, v, f"{where}.{k}") for k, v in value.items()}
    return _scalar(hint, value, where)


def _scalar(hint: Any, value: object, where: str) -> Any:
    if hint is Any:
        return value
    if hint is bool:
        if not isinstance(value, bool):
            raise UsageError(f"{where}: expected true or false, got {_kind(value)}")
        return value
    if hint is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise UsageError(f"{where}: expected an integer, got {_kind(value)}")
        return value
    if hint is float:
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise UsageError(f"{where}: expected a number, got {_kind(value)}")
        return float(value)
    if hint is str:
        if not isinstance(value, str):
            raise UsageError(f"{where}: expected a string, got {_kind(value)}")
        return value
    if hint is datetime:
        return _datetime(value, where)
    if hint is bytes and isinstance(value, str):
        return bytes.fromhex(value)
    if isinstance(hint, type) and issubclass(hint, PurePath) and isinstance(value, str):
        return hint(value)
    if isinstance(hint, type) and issubclass(hint, enum.Enum):
        try:
            return hint(value)
        except ValueError:
            known = ", ".join(repr(m.value) for m in hint)
            raise UsageError(f"{where}: expected one of {known}, got {value!r}") from None
    from_dict = getattr(hint, "from_dict", None)
    if callable(from_dict):
        return from_dict(value)
    if dataclasses.is_dataclass(hint) and isinstance(hint, type):
        return _dataclass(hint, value, where)
    raise UsageError(f"{where}: this field cannot be given over the API")


def _datetime(value: object, where: str) -> datetime:
    if not isinstance(value, str):
        raise UsageError(f"{where}: expected an ISO-8601 time, got {_kind(value)}")
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        raise UsageError(f"{where}: expected an ISO-8601 time, got {value!r}") from None
    if parsed.tzinfo is None:
        raise UsageError(f"{where}: the time {value!r} needs an offset (Z or +HH:MM)")
    return parsed


def _kind(value: object) -> str:
    """The JSON kind of ``value``, for messages."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int | float):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list):
        return "an array"
    return "an object"


def encode(value: object, *, fields: bool = False) -> Any:
    """``value`` as JSON data; ``fields``: dataclasses as their fields, never their
    ``as_dict()`` (see the module docstring)."""
    as_dict = getattr(value, "as_dict", None)
    if callable(as_dict) and not isinstance(value, type) and not fields:
        return encode(as_dict())
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {
            f.name: encode(getattr(value, f.name), fields=fields)
            for f in dataclasses.fields(value)
        }
    if isinstance(value, enum.Enum):
        return encode(value.value)
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, PurePath):
        return str(value)
    if isinstance(value, Mapping):
        return {str(k): encode(v, fields=fields) for k, v in value.items()}
    if isinstance(value, set | frozenset):
        return sorted((encode(v, fields=fields) for v in value), key=str)
    if isinstance(value, list | tuple):
        return [encode(v, fields=fields) for v in value]
    if isinstance(value, bytes):
        return value.hex()
    if value is None or isinstance(value, str | int | float | bool):
        return value
    return str(value)
