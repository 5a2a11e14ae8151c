"""Validation of checkpoint names and targets (Docker's rule, Docker's message), and of
the other free text a checkpoint records: labels and host names (no control characters)."""

from __future__ import annotations

import re
from collections.abc import Mapping

from cryostash.errors import InvalidName, UsageError
from cryostash.redact import escape, has_control

#: Docker's ``restrictedNamePattern`` for checkpoint IDs (moby daemon/names).
NAME_PATTERN = re.compile(r"^[a-zA-Z0-9][a-zA-Z0-9_.-]+$")
#: The longest name accepted: a name is one path component on every store.
MAX_NAME_LENGTH = 255


def validate_name(name: str) -> str:
    """Return ``name`` unchanged if it is a valid checkpoint name.

    Raises:
        InvalidName: with Docker's message,
            ``Invalid checkpoint ID (NAME), only [a-zA-Z0-9][a-zA-Z0-9_.-] are allowed``.
    """
    if (
        not isinstance(name, str)
        or len(name) > MAX_NAME_LENGTH
        or NAME_PATTERN.fullmatch(name) is None
    ):
        raise InvalidName(
            f"Invalid checkpoint ID ({name}), only [a-zA-Z0-9][a-zA-Z0-9_.-] are allowed"
        )
    return name


def validate_target(target: str) -> str:
    """Return ``target`` unchanged if it is valid (same rule as names).

    Raises:
        InvalidName: ``Invalid container name (TARGET), only [a-zA-Z0-9][a-zA-Z0-9_.-]
            are allowed``.
    """
    if (
        not isinstance(target, str)
        or len(target) > MAX_NAME_LENGTH
        or NAME_PATTERN.fullmatch(target) is None
    ):
        raise InvalidName(
            f"Invalid container name ({target}), only [a-zA-Z0-9][a-zA-Z0-9_.-] are allowed"
        )
    return target


#: The longest host name accepted (a DNS name is at most 253 characters).
MAX_HOST_LENGTH = 253


def names_ok(target: str, name: str) -> bool:
    """True if both ``target`` and ``name`` pass the name rule (a row or object found in
    a catalog or store may not: it was written by an older version or another tool)."""
    try:
        validate_target(target)
        validate_name(name)
    except ValueError:
        return False
    return True


def validate_host(host: str) -> str:
    """Return ``host`` unchanged if it can be recorded as this host's name.

    Raises:
        UsageError: empty, longer than :data:`MAX_HOST_LENGTH`, or holding a control
            character (``invalid host name 'a\\nb': control characters are not allowed``).
    """
    if not host or len(host) > MAX_HOST_LENGTH:
        raise UsageError(
            f"invalid host name {escape(host[:40])!r}: expected 1 to {MAX_HOST_LENGTH} characters"
        )
    if has_control(host):
        raise UsageError(
            f"invalid host name '{escape(host)}': control characters are not allowed"
        )
    return host


def validate_labels(labels: Mapping[str, str]) -> dict[str, str]:
    """Return ``labels`` as a dict if every key and value is recordable.

    Raises:
        UsageError: a key that is empty, a key or value that is not text or holds a
            control character (``invalid label 'k': control characters are not allowed``).
    """
    for key, value in labels.items():
        if not isinstance(key, str) or not isinstance(value, str) or not key:
            raise UsageError(f"invalid label {escape(key)!r}: expected KEY=VALUE text")
        if has_control(key) or has_control(value):
            raise UsageError(
                f"invalid label '{escape(key)}': control characters are not allowed"
            )
    return dict(labels)
