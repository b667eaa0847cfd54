"""Links an incident carries to where people look: its runbook, dashboard, panel, source.

They come from the alert (annotations `runbook_url` and `dashboard_url`; Alertmanager's
`generatorURL`; Grafana's `dashboardURL` and `panelURL`, kept as annotations of those
names) and from the rule (`runbook_url`, which wins over the alert's: the rule is the
operator's, the alert is the fleet's). Only plain http(s) URLs are links: anything else
(javascript:, data:, spaces, control characters, very long values) is not shown.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from urllib.parse import urlsplit

MAX_URL = 2000  # Slack takes 3000 in a button; browsers and mail clients a little less
# Printable ASCII without space, quotes or angle brackets: what a URL needs, nothing that
# could end an HTML attribute or a Slack link.
_PLAIN = re.compile(r"[!#-;=?-~]+")

# (title, annotation keys in order of preference)
KINDS: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("Runbook", ("runbook_url",)),
    ("Dashboard", ("dashboard_url", "dashboardURL")),
    ("Panel", ("panelURL",)),
    ("Source", ("generatorURL",)),
)


@dataclass(frozen=True)
class Link:
    """One link to show: a button in Slack, a line in email and `show`."""

    title: str
    url: str


def safe_url(value: object) -> str | None:
    """`value` if it is a plain http(s) URL with a host, else None."""
    if not isinstance(value, str) or not 0 < len(value) <= MAX_URL or not _PLAIN.fullmatch(value):
        return None
    try:
        parts = urlsplit(value)
    except ValueError:
        return None
    if parts.scheme.lower() not in ("http", "https") or not parts.hostname:
        return None
    return value


def links_of(annotations: Mapping[str, str]) -> list[Link]:
    """The incident's links, in a fixed order, each URL once."""
    found: list[Link] = []
    for title, keys in KINDS:
        url = next((u for k in keys if (u := safe_url(annotations.get(k))) is not None), None)
        if url is not None and all(link.url != url for link in found):
            found.append(Link(title, url))
    return found
