"""The audit trail as people and SIEMs read it: steps counted from 1, times in RFC 3339.

The store keeps what the engine wrote (step indexes from 0, epoch seconds); readers of the
admin API and the CLI see it as the rest of the CLI speaks.
"""

from __future__ import annotations

from typing import Any

from remediator.clock import rfc3339

# Detail keys that count from 0 in the store (`step`, and `part` of an all-step).
_COUNTS = frozenset({"step", "part"})
# Detail keys that hold a moment (epoch seconds) rather than a duration.
_MOMENTS = frozenset({"until", "expires_at", "since", "due_at", "deadline", "ends_at"})
MAX_CURSOR = 2**63 - 1  # the store's BIGINT


def spoken(detail: dict[str, Any]) -> dict[str, Any]:
    """`detail` with its step and part numbers from 1 and its moments as RFC 3339."""
    out: dict[str, Any] = {}
    for key, value in detail.items():
        number = isinstance(value, int | float) and not isinstance(value, bool)
        if key in _COUNTS and isinstance(value, int) and not isinstance(value, bool):
            out[key] = value + 1
        elif key in _MOMENTS and number:
            out[key] = rfc3339(float(value))
        else:
            out[key] = value
    return out


def cursor_text(xact: int, row_id: int) -> str:
    """The opaque cursor of a row: `XACT-ID`."""
    return f"{xact}-{row_id}"


def parse_cursor(text: str) -> tuple[int, int] | None:
    """(xact, id) from `XACT-ID`, or None when it is not one."""
    head, sep, tail = text.partition("-")
    if not sep or not (head.isascii() and head.isdigit() and tail.isascii() and tail.isdigit()):
        return None
    if len(head) > 19 or len(tail) > 19:
        return None
    xact, row_id = int(head), int(tail)
    if xact > MAX_CURSOR or row_id > MAX_CURSOR:  # the store's BIGINT
        return None
    return xact, row_id
