"""The CLI's client of a running daemon's admin API (see openapi.py for the routes)."""

from __future__ import annotations

import json
import os
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from remediator import openapi
from remediator.config.models import Config
from remediator.config.server import parse_listen
from remediator.errors import RemediatorError

DEFAULT_TOKEN_ENV = "REMEDIATOR_ADMIN_TOKEN"  # noqa: S105 - names an env var
TIMEOUT_S = 30


class ApiError(RemediatorError):
    """The daemon answered, but not 200; `status` is its HTTP status."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


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


def token_env(config: Config | None) -> str:
    """The env var holding the admin token: server.admin_token_env, else the default."""
    return (config.file.server.admin_token_env if config else None) or DEFAULT_TOKEN_ENV


@dataclass(frozen=True)
class AdminClient:
    """Talks to one daemon with one admin token; every call returns the 200 JSON body."""

    url: str
    token: str = field(repr=False)
    token_env: str

    @classmethod
    def connect(
        cls, config: Config | None, url: str | None, environ: Mapping[str, str] | None = None
    ) -> AdminClient:
        """The daemon from --url or the config, the token from the env var the config names."""
        environ = os.environ if environ is None else environ
        name = token_env(config)
        value = environ.get(name, "")
        if not value:
            raise RemediatorError(f"set {name} to the daemon's admin token")
        return cls(base_url(config, url), value, name)

    def get(self, path: str, query: Mapping[str, str] | None = None) -> dict[str, Any]:
        """GET path?query."""
        if query:
            path = f"{path}?{urllib.parse.urlencode(query)}"
        return self.request("GET", path)

    def post(self, path: str, body: Mapping[str, Any]) -> dict[str, Any]:
        """POST a JSON body."""
        return self.request("POST", path, json.dumps(body).encode())

    def request(self, method: str, path: str, data: bytes | None = None) -> dict[str, Any]:
        """One call; a status other than 200 raises ApiError with the daemon's message."""
        if not self.url.startswith(("http://", "https://")):
            raise RemediatorError(f"--url must be http:// or https://, not {self.url!r}")
        req = urllib.request.Request(  # noqa: S310 - scheme checked above
            self.url + path,
            data=data,
            method=method,
            # Says the decisions it carries came through the CLI (their audit's `via`).
            headers={"Content-Type": "application/json", openapi.CLIENT_HEADER: "cli"},
        )
        # Not copied onto a redirect: the token goes to this daemon only.
        req.add_unredirected_header("Authorization", f"Bearer {self.token}")
        try:
            with urllib.request.urlopen(req, timeout=TIMEOUT_S) as resp:  # noqa: S310 - as above
                return self._json(resp.read())
        except urllib.error.HTTPError as exc:
            raise self._refused(exc.code, exc.read()) from None
        except (urllib.error.URLError, OSError, ValueError) as exc:  # ValueError: a bad port
            reason = exc.reason if isinstance(exc, urllib.error.URLError) else exc
            raise RemediatorError(f"cannot reach the daemon at {self.url}: {reason}") from None

    def _json(self, raw: bytes) -> dict[str, Any]:
        try:
            body = json.loads(raw)
        except ValueError:
            body = None
        if not isinstance(body, dict):
            raise ApiError(
                200, f"{self.url} answered, but not with the admin API's JSON: check --url"
            )
        return body

    def _refused(self, status: int, raw: bytes) -> ApiError:
        try:
            reply = json.loads(raw)
            message = str(reply.get("error") or reply.get("message") or f"HTTP {status}")
        except (ValueError, AttributeError):
            message = f"HTTP {status} from {self.url}, not the admin API's JSON: check --url"
        if status == 401:
            message = f"{message}: set {self.token_env} to the daemon's admin token"
        return ApiError(status, message)
