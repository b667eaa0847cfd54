"""Numbers from outside are plain and bounded, or refused (None), never an exception."""

from __future__ import annotations

import math

import pytest
from hypothesis import given
from hypothesis import strategies as st

from remediator.config.durations import parse_duration
from remediator.parsing import MAX_EPOCH_S, delay_seconds, epoch_seconds, whole_number


@pytest.mark.parametrize(
    ("raw", "most", "least", "expected"),
    [
        ("42", 100, 0, 42),
        ("0", 100, 0, 0),
        ("0", 100, 1, None),
        ("100", 100, 0, 100),
        ("101", 100, 0, None),
        ("\u00b2", 100, 0, None),  # str.isdigit() says yes, int() says no
        ("\u0663", 100, 0, None),  # ARABIC-INDIC DIGIT THREE: int() reads it, we do not
        ("1" * 5000, 2**63 - 1, 0, None),  # int() raises past 4,300 digits
        ("-1", 100, 0, None),
        ("+1", 100, 0, None),
        ("1e3", 10**6, 0, None),
        ("1_000", 10**6, 0, None),
        (" 7", 100, 0, None),
        ("7\n", 100, 0, None),  # `$` would let this through; fullmatch does not
        ("", 100, 0, None),
        (None, 100, 0, None),
        ("9223372036854775807", 2**63 - 1, 0, 2**63 - 1),
        ("9223372036854775808", 2**63 - 1, 0, None),
    ],
)
def test_whole_number(raw: str | None, most: int, least: int, expected: int | None) -> None:
    """Only ASCII digits within [least, most] are a number."""
    assert whole_number(raw, most, least) == expected


@given(st.text(max_size=30))
def test_whole_number_never_raises(raw: str) -> None:
    """Any text is a bounded int or None."""
    value = whole_number(raw, 10**12)
    assert value is None or 0 <= value <= 10**12


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("30", 30.0),
        (" 5 ", 5.0),
        ("99999", 3600.0),
        ("inf", None),
        ("nan", None),
        ("1e400", None),
        ("-3", None),
        ("2.5", None),
        ("Wed, 21 Oct 2026 07:28:00 GMT", None),
        (None, None),
    ],
)
def test_delay_seconds(raw: str | None, expected: float | None) -> None:
    """Retry-After in whole seconds, capped; anything else (a date, inf) is not a delay."""
    assert delay_seconds(raw, 3600.0) == expected


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (1767607200, 1767607200.0),
        (1767607200.5, 1767607200.5),
        (MAX_EPOCH_S, MAX_EPOCH_S),
        (MAX_EPOCH_S + 1, None),
        (10**400, None),  # float() raises OverflowError on it
        (math.inf, None),
        (math.nan, None),
        (-1, None),
        (True, None),
        ("1767607200", None),
        (None, None),
    ],
)
def test_epoch_seconds(value: object, expected: float | None) -> None:
    """Epoch seconds are finite numbers between 1970 and the year 9999."""
    assert epoch_seconds(value) == expected


@pytest.mark.parametrize(
    ("value", "error"),
    [
        ("9" * 400 + "s", "not a finite number of seconds"),
        (math.inf, "not a finite number of seconds"),
        (math.nan, "not a finite number of seconds"),
        (10**400, "not a finite number of seconds"),
        ("\u0663s", "use a number and a unit"),
    ],
)
def test_durations_are_finite_and_ascii(value: object, error: str) -> None:
    """A duration is a finite number of seconds written in ASCII digits."""
    with pytest.raises(ValueError, match=error):
        parse_duration(value)
