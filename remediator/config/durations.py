"""Durations written as Prometheus does: 30s, 10m, 1h30m, 2d."""

from __future__ import annotations

import math
import re

_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0, "w": 604800.0}
_PART = re.compile(r"([0-9]+(?:\.[0-9]+)?)(ms|s|m|h|d|w)")  # ASCII digits, unlike \d
# The whole text parse_duration reads, for JSON Schema (editors check durations as typed).
DURATION_PATTERN = rf"^\s*(?:{_PART.pattern})+\s*$"


def parse_duration(value: object) -> float:
    """Parse '1h30m' into seconds; bare numbers are seconds."""
    if isinstance(value, bool):
        raise ValueError("expected a duration like 30s, 10m or 6h")
    if isinstance(value, int | float):
        if value < 0:
            raise ValueError("a duration cannot be negative")
        return _finite(value, value)
    if not isinstance(value, str) or not value.strip():
        raise ValueError("expected a duration like 30s, 10m or 6h")
    text = value.strip()
    pos, total = 0, 0.0
    for m in _PART.finditer(text):
        if m.start() != pos:
            break
        total += float(m.group(1)) * _UNITS[m.group(2)]
        pos = m.end()
    if pos != len(text) or pos == 0:
        raise ValueError(f"invalid duration {value!r}: use a number and a unit (ms, s, m, h, d, w)")
    return _finite(total, value)


def _finite(seconds: float, value: object) -> float:
    """`seconds` as a float when finite; 1e400, inf and nan are errors, not durations."""
    try:
        out = float(seconds)  # OverflowError for an int past float's range
    except OverflowError:
        out = math.inf
    if not math.isfinite(out):
        # Never repr() a huge int: past 4,300 digits that raises too.
        shown = (
            f" {value[:40]!r}{'...' if len(value) > 40 else ''}" if isinstance(value, str) else ""
        )
        raise ValueError(f"invalid duration{shown}: not a finite number of seconds")
    return out


def format_duration(seconds: float) -> str:
    """Render seconds compactly: 5400 -> '1h30m'."""
    if seconds < 1:
        return f"{seconds * 1000:.0f}ms"
    rest = int(seconds)
    out = ""
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60), ("s", 1)):
        if rest >= size:
            out += f"{rest // size}{unit}"
            rest %= size
    return out
