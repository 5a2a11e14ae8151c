"""Skip-or-fail for tests that need a real component.

On a developer machine without CRIU, PostgreSQL or S3 a test may skip, saying why.
In CI (``CI=true``) a missing component is a failure, never a silent skip.
"""

from __future__ import annotations

import os
from typing import NoReturn

import pytest


def in_ci() -> bool:
    """True when running under CI (``CI`` set to a true value)."""
    return os.environ.get("CI", "").lower() in {"1", "true", "yes"}


def missing(component: str, reason: str) -> NoReturn:
    """Skip (developer machine) or fail (CI) because ``component`` is unavailable."""
    message = f"{component} unavailable: {reason}"
    if in_ci():
        pytest.fail(f"{message} (CI=true: required components must be present)")
    pytest.skip(message)
