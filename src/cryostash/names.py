"""Validation of checkpoint names and targets (Docker's rule, Docker's message)."""

from __future__ import annotations

import re

from cryostash.errors import InvalidName

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
