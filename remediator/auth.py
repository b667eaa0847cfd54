"""Webhook authentication as Alertmanager's http_config sends it; constant-time compares."""

from __future__ import annotations

import base64
import binascii
import hmac
from collections.abc import Mapping
from dataclasses import dataclass

from remediator.config.models import Config
from remediator.secrets import read_secret


def header_bytes(value: str) -> bytes:
    """A header value's bytes as sent: aiohttp hands non-UTF-8 bytes over as surrogates."""
    return value.encode("utf-8", "surrogateescape")


@dataclass(frozen=True)
class WebhookAuthenticator:
    """Checks an Authorization header against a bearer token or basic credentials."""

    bearer: bytes | None = None
    username: bytes | None = None
    password: bytes | None = None

    @classmethod
    def from_config(
        cls, config: Config, environ: Mapping[str, str] | None = None
    ) -> WebhookAuthenticator:
        """Read the configured secret (raises SecretError when missing)."""
        auth = config.file.server.webhook_auth
        where = "server.webhook_auth"
        if auth.basic is not None:
            pw_file = (
                config.resolve_path(auth.basic.password_file) if auth.basic.password_file else None
            )
            password = read_secret(
                env=auth.basic.password_env, file=pw_file, where=f"{where}.basic", environ=environ
            )
            return cls(username=auth.basic.username.encode(), password=password.encode())
        token_file = config.resolve_path(auth.bearer_token_file) if auth.bearer_token_file else None
        token = read_secret(
            env=auth.bearer_token_env, file=token_file, where=where, environ=environ
        )
        return cls(bearer=token.encode())

    def check(self, header: str | None) -> bool:
        """Whether the Authorization header carries the right credentials."""
        if not header:
            return False
        scheme, _, value = header.strip().partition(" ")
        value = value.strip()
        if self.bearer is not None:
            return scheme.lower() == "bearer" and hmac.compare_digest(
                header_bytes(value), self.bearer
            )
        if scheme.lower() != "basic" or self.username is None or self.password is None:
            return False
        try:
            decoded = base64.b64decode(value, validate=True)
        except (binascii.Error, ValueError):
            return False
        user, sep, password = decoded.partition(b":")
        ok_user = hmac.compare_digest(user, self.username)
        ok_password = hmac.compare_digest(password, self.password)
        return bool(sep) and ok_user and ok_password
