"""Resolve the `slack:` and `email:` sections into senders (secrets read at start)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from remediator.config.models import Config
from remediator.errors import SecretError
from remediator.notify.email import EmailSender, SmtpSettings
from remediator.notify.slack import SlackSender
from remediator.secrets import read_secret


@dataclass(frozen=True)
class Notifiers:
    """What the outbox and the Slack endpoint need; None where not configured."""

    slack: SlackSender | None
    signing_secret: bytes | None  # slack.mode: http
    email: EmailSender | None
    app_token: str | None = None  # slack.mode: socket


def build_notifiers(config: Config, environ: Mapping[str, str] | None = None) -> Notifiers:
    """Senders from config; a missing secret is a SecretError now, not a lost page later."""
    slack = signing = email = app_token = None
    if (s := config.file.slack) is not None:
        token = read_secret(env=s.token_env, file=None, where="slack.token_env", environ=environ)
        slack = SlackSender(token, s.api_url, s.timeout)
        if s.mode == "socket" and s.app_token_env is not None:
            app_token = read_secret(
                env=s.app_token_env, file=None, where="slack.app_token_env", environ=environ
            )
            if not app_token.startswith("xapp-"):
                raise SecretError(
                    f"slack.app_token_env: ${s.app_token_env} is not an app-level token "
                    "(xapp-...); create one under Basic Information > App-Level Tokens "
                    "with the connections:write scope"
                )
        else:
            secret = read_secret(
                env=s.signing_secret_env,
                file=None,
                where="slack.signing_secret_env",
                environ=environ,
            )
            signing = secret.encode()
    if (e := config.file.email) is not None:
        user = password = None
        if e.username_env is not None:
            user = read_secret(
                env=e.username_env, file=None, where="email.username_env", environ=environ
            )
            password = read_secret(
                env=e.password_env, file=None, where="email.password_env", environ=environ
            )
        ca_file = str(config.resolve_path(e.ca_file)) if e.ca_file else None
        email = EmailSender(
            SmtpSettings(e.host, e.port, e.starttls, user, password, e.from_, ca_file, e.timeout)
        )
    return Notifiers(slack, signing, email, app_token)
