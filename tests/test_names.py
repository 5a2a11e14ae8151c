"""Docker's checkpoint name rule, with Docker's message."""

from __future__ import annotations

import pytest

from cryostash import InvalidName, validate_name, validate_target

REJECTED = [
    "..",
    "../escape",
    "foo/../..",
    "/abs",
    "bad name",
    "",
    "   ",
    "a",
    ".hidden",
    "-dash",
    "a\nb",
    "a\x00b",
    "x" * 300,
    "né",
    "ok\n",
]
ACCEPTED = ["good", "good.name", "good-name_1", "ab", "A1", "x" * 255]


@pytest.mark.parametrize("name", REJECTED)
def test_rejected_names_get_dockers_message(name: str) -> None:
    with pytest.raises(InvalidName) as err:
        validate_name(name)
    assert str(err.value) == (
        f"Invalid checkpoint ID ({name}), only [a-zA-Z0-9][a-zA-Z0-9_.-] are allowed"
    )
    assert isinstance(err.value, ValueError)


@pytest.mark.parametrize("name", REJECTED)
def test_rejected_targets_name_the_container(name: str) -> None:
    with pytest.raises(InvalidName, match=r"^Invalid container name \("):
        validate_target(name)


@pytest.mark.parametrize("name", ACCEPTED)
def test_accepted_names(name: str) -> None:
    assert validate_name(name) == name
    assert validate_target(name) == name
