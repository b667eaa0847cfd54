"""Links an incident carries to where people look: its runbook, dashboard, panel, source.

They come from the alert (annotations `runbook_url` and `dashboard_url`; Alertmanager's
`generatorURL`; Grafana's `dashboardURL` and `panelURL`, kept as annotations of those
names) and from the rule (`runbook_url`, which wins over the alert's: the rule is the
operator's, the alert is the fleet's). Only plain http(s) URLs are links: anything else
(javascript:, data:, spaces, control characters, very long values) is not shown.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Mapping
from dataclasses import dataclass
from urllib.parse import urlsplit

MAX_URL = 2000  # Slack takes 3000 in a button; browsers and mail clients a little less
# RFC 3986's characters (unreserved, reserved and `%`): no space, quotes, angle brackets,
# braces, `|`, `\\`, `^` or backtick, nothing that could end an HTML attribute or a Slack link.
_PLAIN = re.compile(r"[A-Za-z0-9\-._~:/?#\[\]@!$&'()*+,;=%]+")
_BAD_ESCAPE = re.compile(r"%(?![0-9A-Fa-f]{2})")
# DNS labels: letters, digits and inner hyphens, dot-separated.
_HOST_NAME = re.compile(r"(?!-)[A-Za-z0-9-]{1,63}(?<!-)(\.(?!-)[A-Za-z0-9-]{1,63}(?<!-))*\.?")

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
    """`value` if it is a plain http(s) URL with a valid host (and port), made only of
    RFC 3986's characters with well-formed %-escapes, else None: what Slack takes in a
    button (one it refuses would take the whole message, approve buttons and all)."""
    if not isinstance(value, str) or not 0 < len(value) <= MAX_URL or not _PLAIN.fullmatch(value):
        return None
    if _BAD_ESCAPE.search(value):
        return None
    try:
        parts = urlsplit(value)
        port_ok = parts.port is None or parts.port > 0
    except ValueError:  # a port that is no number or out of range
        return None
    host = parts.hostname
    if parts.scheme.lower() not in ("http", "https") or not host or not port_ok:
        return None
    if not (_HOST_NAME.fullmatch(host) or _is_ip(host)):
        return None
    return value


def _is_ip(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True


def links_of(annotations: Mapping[str, str]) -> list[Link]:
    """The incident's links, in a fixed order, each URL once."""
    found: list[Link] = []
    for title, keys in KINDS:
        url = next((u for k in keys if (u := safe_url(annotations.get(k))) is not None), None)
        if url is not None and all(link.url != url for link in found):
            found.append(Link(title, url))
    return found
