"""What an `http` step may reach: the target's address or a host in `allowed_hosts`.

Checked twice. When rules load (`check_url_template`): the scheme, host and port part of
a URL template may hold only literal text and `{{ target.* }}` expressions, and a literal
host must be listed in `allowed_hosts`. After rendering (`check_target_url`): an http(s)
URL without userinfo, whose host is the target's address or an allowed host, and whose
path holds no dot segment (`..`, `.`), also not percent-encoded (`%2e%2e`, `..%2f`),
no backslash and no control character. Labels are percent-encoded as they render
(templates.render_url), so these checks are the second line, not the only one.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Collection
from urllib.parse import unquote, urlsplit

from yarl import URL

from remediator.templates import template_parts

SCHEMES = ("http", "https")
# Letters, digits, `-`, `_` and dots; IDN hosts are written in their xn-- form.
_HOSTNAME = re.compile(r"^[a-z0-9_]([a-z0-9_-]*[a-z0-9_])?(\.[a-z0-9_]([a-z0-9_-]*[a-z0-9_])?)*$")
_DECODE_ROUNDS = 4


def check_http_url(text: str) -> URL:
    """An absolute http(s) URL with a host; ValueError saying what is wrong otherwise."""
    try:
        url = URL(text)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"{text!r} is not a valid URL: {exc}") from None
    if url.scheme not in SCHEMES:
        raise ValueError(f"{text!r} is not an http:// or https:// URL")
    if not url.host:
        raise ValueError(f"{text!r} is a URL without a host")
    return url


def normalize_host(host: str) -> str:
    """`Api1.Example.` -> `api1.example`, `[FD00::1]` -> `fd00::1`; ValueError if not a host."""
    text = host[1:-1] if host.startswith("[") and host.endswith("]") else host
    try:
        return ipaddress.ip_address(text).compressed
    except ValueError:
        pass
    name = text.lower().removesuffix(".")
    if not _HOSTNAME.match(name):
        raise ValueError(f"{host!r} is not a host name or IP address")
    return name


def allowed_host_entry(value: str) -> str:
    """An `allowed_hosts` entry: a literal host name or IP address, no port, no template."""
    if "{" in value:
        raise ValueError(f"allowed_hosts entry {value!r}: templates are not allowed here")
    return normalize_host(value)


def _origin_end(skeleton: str) -> int:
    """Where scheme://host:port ends in the template's text (placeholders are NUL)."""
    start = skeleton.find("://")
    if start < 0:
        return len(skeleton)
    ends = [i for i in (skeleton.find(c, start + 3) for c in "/?#") if i >= 0]
    return min(ends, default=len(skeleton))


def check_url_template(source: str, allowed_hosts: Collection[str]) -> None:
    """When rules load: nothing but the target or the operator picks the host and port."""
    parts = template_parts(source)
    skeleton = "".join(p if isinstance(p, str) else "\0" for p in parts)
    end = _origin_end(skeleton)
    pos = 0
    for part in parts:
        if pos >= end:
            break
        if isinstance(part, str):
            pos += len(part)
            continue
        pos += 1
        if not part <= {"target"}:
            names = ", ".join(sorted(part - {"target"}))
            raise ValueError(
                f"url {source!r}: the scheme, host and port may use only literal text and "
                f"target.* ({names} is used there); put label values in the path or query"
            )
    if "\0" not in skeleton[:end]:
        host = check_http_url(skeleton[:end]).raw_host or ""
        if normalize_host(host) not in allowed_hosts:
            raise ValueError(
                f"url {source!r}: host {host} is not the target's address; "
                "list it in allowed_hosts, or use {{ target.address }}"
            )


def _check_path(path: str) -> None:
    decoded = path
    for _ in range(_DECODE_ROUNDS):
        decoded, before = unquote(decoded), decoded
        if decoded == before:
            break
    else:
        raise ValueError(f"path {path!r} is percent-encoded {_DECODE_ROUNDS} times or more")
    if "\\" in decoded:
        raise ValueError(f"path {path!r} holds a backslash")
    if any(ord(c) < 32 or c == "\x7f" for c in decoded):
        raise ValueError(f"path {path!r} holds a control character")
    # `..;x` is `..` to servlet containers (path parameters).
    if any(seg.split(";", 1)[0] in (".", "..") for seg in decoded.split("/")):
        raise ValueError(f"path {path!r} holds a dot segment (. or ..), perhaps encoded")


def check_target_url(text: str, allowed: Collection[str], target: str | None) -> URL:
    """After rendering: a URL to an allowed host only; ValueError saying why otherwise.

    `allowed` holds normalized hosts (the target's address and `allowed_hosts`);
    `target` is the target's address, named in the message.
    """
    try:
        parts = urlsplit(text)
    except ValueError as exc:
        raise ValueError(f"{text!r} is not a valid URL: {exc}") from None
    if "@" in parts.netloc:
        raise ValueError(f"{text!r} holds userinfo (user@host)")
    if "\\" in parts.netloc:
        raise ValueError(f"{text!r} holds a backslash in its host part")
    url = check_http_url(text)
    host = normalize_host(url.raw_host or "")
    if parts.hostname is None or normalize_host(parts.hostname) != host:
        raise ValueError(f"{text!r}: its host is ambiguous")
    if host not in allowed:
        whose = f"the target's address ({target})" if target else "a target (the rule has none)"
        raise ValueError(f"{text!r}: host {host} is neither {whose} nor in allowed_hosts")
    try:
        _check_path(parts.path)
    except ValueError as exc:
        raise ValueError(f"{text!r}: {exc}") from None
    return url
