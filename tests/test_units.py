"""cryostash.units: the one duration grammar, sizes, and byte counts for people."""

from __future__ import annotations

import pytest

from cryostash.errors import UsageError
from cryostash.units import format_size, parse_duration, parse_size


@pytest.mark.parametrize(
    ("text", "seconds"),
    [("0", 0), ("90", 90), ("1.5", 1.5), (" 30S ", 30), ("15m", 900), ("24h", 86400),
     ("7d", 604800), ("2w", 1209600), ("1h30m", 5400), ("1.5d", 129600), ("0s", 0),
     ("1w1d1h1m1s", 694861), ("0.5m", 30)],
)  # fmt: skip
def test_durations(text: str, seconds: float) -> None:
    assert parse_duration(text) == seconds


@pytest.mark.parametrize(
    "text", ["", "x", "5x", "h", "1h 30m", "+1h", "nan", "inf", "1e3", "1_000", "9" * 400]
)
def test_bad_durations(text: str) -> None:
    with pytest.raises(UsageError, match=r"invalid duration .*: expected e\.g\. 0, 30s"):
        parse_duration(text)


@pytest.mark.parametrize("text", ["-5", "-5m", "-1.5"])
def test_negative_durations(text: str) -> None:
    with pytest.raises(UsageError, match=f"invalid --grace '{text}': it must not be negative"):
        parse_duration(text, "--grace")


def test_sizes() -> None:
    assert parse_size("1M") == 1 << 20
    assert parse_size("512k") == 512 << 10
    assert parse_size("2GiB") == 2 << 30
    assert parse_size("4096") == 4096
    with pytest.raises(UsageError, match="invalid cache size 'x'"):
        parse_size("x", "cache size")


@pytest.mark.parametrize(
    ("size", "shown"),
    [(0, "0 B"), (1023, "1023 B"), (1536, "1.5 KiB"), (3 << 20, "3.0 MiB"),
     (5 << 40, "5120.0 GiB")],
)  # fmt: skip
def test_format_size(size: int, shown: str) -> None:
    assert format_size(size) == shown
