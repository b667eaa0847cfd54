"""Numbers from outside (HTTP paths and headers, Slack payloads, recordings), read strictly.

Python's own parsers are generous in ways input must not reach: `str.isdigit()` (and
`isdecimal()`) say yes to `²` or `٣`, which `int()` refuses or reads; `int()` also takes
`1_000` and surrounding spaces, and raises ValueError past 4,300 digits; `float()` reads
`inf`, `nan` and `1e400`, and raises OverflowError on a huge int. Each helper here answers
None (or False) for anything but a plain, bounded value, so callers say 400 or 401 with
their own message instead of letting an exception become a 500.
"""

from __future__ import annotations

import math
import re

_DIGITS = re.compile(r"[0-9]+")  # ASCII only, unlike \d and str.isdigit()
MAX_ID = 2**63 - 1  # a store id (SQLite INTEGER, PostgreSQL BIGINT): no larger one exists
MAX_EPOCH_S = 253_402_300_799.0  # 9999-12-31T23:59:59Z: the last second datetime can show


def whole_number(raw: str | None, most: int, least: int = 0) -> int | None:
    """`raw` as an int from `least` to `most` when it is plain ASCII digits, else None."""
    if raw is None or not 0 < len(raw) <= len(str(most)) or not _DIGITS.fullmatch(raw):
        return None
    value = int(raw)
    return value if least <= value <= most else None


def delay_seconds(raw: str | None, most: float) -> float | None:
    """An HTTP delay-seconds header (Retry-After) capped at `most`; None when not one."""
    if raw is None:
        return None
    value = whole_number(raw.strip(), 10**9)
    return None if value is None else min(float(value), most)


def epoch_seconds(value: object) -> float | None:
    """A JSON number as epoch seconds from 1970 to year 9999, else None (no inf, no nan)."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    if isinstance(value, int) and not 0 <= value <= MAX_EPOCH_S:
        return None  # before float(): a huge int raises OverflowError there
    seconds = float(value)
    return seconds if math.isfinite(seconds) and 0 <= seconds <= MAX_EPOCH_S else None
