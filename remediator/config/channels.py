"""Typed models of remediator.yml's notification sections: `slack:`, `email:` and
`notifications:` (re-exported by models.py, where the rest of the file's sections are)."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field, model_validator

from remediator.config.common import Duration, Model
from remediator.config.names import EnvName

EMAIL_PATTERN = r"^[^@\s<>,;]+@[^@\s<>,;]+$"


class SlackConfig(Model):
    """Slack Web API access (used by approvals and escalations)."""

    token_env: str = "SLACK_BOT_TOKEN"  # noqa: S105 - names an env var, holds no secret
    signing_secret_env: str = "SLACK_SIGNING_SECRET"  # noqa: S105 - names an env var
    api_url: str = "https://slack.com/api/"
    channel: str
    timeout: Duration = 10.0
    # How clicks arrive: `http` (Slack posts them to /slack/interactions, which must be
    # reachable from the internet) or `socket` (the daemon opens a Socket Mode websocket
    # with the app-level token of `app_token_env`: no inbound endpoint at all).
    mode: Literal["http", "socket"] = "http"
    app_token_env: EnvName | None = None
    # Socket Mode: ping every `socket_ping` (a socket without pongs for 4 pings is
    # reconnected); reconnect after a drop waiting `reconnect_min`, doubling to `reconnect_max`.
    socket_ping: Duration = Field(default=10.0, gt=0)
    reconnect_min: Duration = Field(default=1.0, gt=0)
    reconnect_max: Duration = Field(default=60.0, gt=0)

    @model_validator(mode="after")
    def _socket_needs_app_token(self) -> SlackConfig:
        if self.mode == "socket" and self.app_token_env is None:
            raise ValueError(
                "mode: socket needs app_token_env: the environment variable holding the "
                "app-level token (xapp-...) with the connections:write scope"
            )
        if self.reconnect_min > self.reconnect_max:
            raise ValueError("reconnect_min must not exceed reconnect_max")
        return self


class EmailConfig(Model):
    """SMTP for pages."""

    host: str
    port: int = 587
    starttls: bool = True
    username_env: str | None = None
    password_env: str | None = None
    from_: str = Field(alias="from", pattern=EMAIL_PATTERN)
    fallback_to: list[Annotated[str, Field(pattern=EMAIL_PATTERN)]] = Field(default_factory=list)
    ca_file: str | None = None  # a private CA for the SMTP server's certificate
    timeout: Duration = 30.0

    @model_validator(mode="after")
    def _auth_pair(self) -> EmailConfig:
        if (self.username_env is None) != (self.password_env is None):
            raise ValueError("set both username_env and password_env, or neither")
        return self


class NotificationsConfig(Model):
    """How the outbox retries deliveries (Slack, email) before giving up."""

    retry_min: Duration = 5.0
    retry_max: Duration = 300.0
    # Failed Slack deliveries (each already retried in place) before a page goes by email.
    slack_attempts: int = Field(default=3, ge=1, le=20)
    give_up_after: Duration = 86_400.0
