"""Read one sample from a Prometheus text exposition."""

from __future__ import annotations

import re


def sample(text: str, name: str, labels: str = "") -> float:
    """The value of `name{labels}`, 0 when absent."""
    selector = f"{name}{{{labels}}}" if labels else name
    m = re.search(rf"^{re.escape(selector)} (\S+)$", text, re.MULTILINE)
    return float(m.group(1)) if m else 0.0
