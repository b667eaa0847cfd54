"""Who may call: the webhook's credentials as Alertmanager's http_config sends them, and
the admin API's tokens, each naming who holds it. Every compare is constant-time."""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
from collections.abc import Mapping
from dataclasses import dataclass

from remediator.config.models import Config
from remediator.errors import SecretError
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


@dataclass(frozen=True)
class TokenHolder:
    """Whom an admin token belongs to: `owner` for a personal token, None for the shared one."""

    owner: str | None


class AdminTokens:
    """The admin API's bearer tokens: one per person (server.admin_tokens), and the shared
    one (server.admin_token_env). Tokens are kept and compared as SHA-256 digests, every
    one on each request, so neither the time taken nor an early exit tells which matched."""

    def __init__(self, personal: Mapping[str, str], shared: str | None) -> None:
        self._digests = [(_digest(v), TokenHolder(k)) for k, v in personal.items()]
        if shared is not None:
            self._digests.append((_digest(shared), TokenHolder(None)))

    @classmethod
    def from_config(
        cls, config: Config, environ: Mapping[str, str] | None = None
    ) -> AdminTokens | None:
        """Each token from its env var (SecretError naming a missing one); None when none is set."""
        server = config.file.server
        personal = {
            name: read_secret(
                env=env, file=None, where=f"server.admin_tokens.{name}", environ=environ
            )
            for name, env in server.admin_tokens.items()
        }
        shared = None
        if server.admin_token_env is not None:
            where = "server.admin_token_env"
            shared = read_secret(
                env=server.admin_token_env, file=None, where=where, environ=environ
            )
        _distinct(personal, shared, server.admin_tokens, server.admin_token_env)
        if not personal and shared is None:
            return None
        return cls(personal, shared)

    def identify(self, header: str | None) -> TokenHolder | None:
        """The holder of the bearer token in an Authorization header; None if it is no token."""
        scheme, _, value = (header or "").strip().partition(" ")
        presented = _digest(value.strip())
        found = None
        for digest, holder in self._digests:
            if hmac.compare_digest(presented, digest):
                found = holder
        return found if scheme.lower() == "bearer" else None


def _digest(token: str) -> bytes:
    return hashlib.sha256(header_bytes(token)).digest()


def _distinct(
    personal: Mapping[str, str], shared: str | None, envs: Mapping[str, str], shared_env: str | None
) -> None:
    """Two holders of one token would be one person to the daemon: refuse to start."""
    seen: dict[str, str] = {}
    holders = [(v, f"{k} ({envs[k]})") for k, v in personal.items()]
    holders += [(shared, f"the shared token ({shared_env})")] if shared is not None else []
    for value, who in holders:
        if value in seen:
            raise SecretError(
                f"server.admin_tokens: {seen[value]} and {who} hold the same token;"
                " give each person a token of their own"
            )
        seen[value] = who
