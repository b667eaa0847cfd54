"""The CLI's client of a running daemon's admin API (approve, deny, ack)."""

from __future__ import annotations

import json
import os
import urllib.error
import urllib.request
from collections.abc import Mapping
from typing import Any

from remediator.config.models import Config, parse_listen
from remediator.errors import RemediatorError

DEFAULT_TOKEN_ENV = "REMEDIATOR_ADMIN_TOKEN"  # noqa: S105 - names an env var


def base_url(config: Config | None, url: str | None) -> str:
    """--url, else the config's server.listen (the daemon on this machine)."""
    if url:
        return url.rstrip("/")
    if config is None:
        raise RemediatorError("give --url or a config (-c) to find the daemon")
    host, port = parse_listen(config.file.server.listen)
    host = "127.0.0.1" if host == "0.0.0.0" else host
    host = f"[{host}]" if ":" in host else host
    return f"http://{host}:{port}"


def token(config: Config | None, environ: Mapping[str, str] | None = None) -> str:
    """The admin token from the env var the config names (default REMEDIATOR_ADMIN_TOKEN)."""
    environ = os.environ if environ is None else environ
    name = (config.file.server.admin_token_env if config else None) or DEFAULT_TOKEN_ENV
    value = environ.get(name, "")
    if not value:
        raise RemediatorError(f"set {name} to the daemon's admin token")
    return value


def post(url: str, path: str, admin_token: str, body: dict[str, Any]) -> tuple[int, dict[str, Any]]:
    """POST JSON; returns (status, JSON body) for any HTTP status."""
    if not url.startswith(("http://", "https://")):
        raise RemediatorError(f"--url must be http:// or https://, not {url!r}")
    req = urllib.request.Request(  # noqa: S310 - scheme checked above
        url + path,
        data=json.dumps(body).encode(),
        method="POST",
        headers={"Authorization": f"Bearer {admin_token}", "Content-Type": "application/json"},
    )
    try:
        with urllib.request.urlopen(req, timeout=30) as resp:  # noqa: S310 - as above
            return resp.status, json.loads(resp.read() or b"{}")
    except urllib.error.HTTPError as exc:
        try:
            return exc.code, json.loads(exc.read() or b"{}")
        except ValueError:
            return exc.code, {"error": exc.reason}
    except (urllib.error.URLError, OSError) as exc:
        raise RemediatorError(f"cannot reach the daemon at {url}: {exc}") from exc
