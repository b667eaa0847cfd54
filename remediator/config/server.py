"""Typed model of remediator.yml's `server:` section: the listener, webhook auth, admin
tokens (re-exported by models.py)."""

from __future__ import annotations

from typing import Annotated

from pydantic import AfterValidator, Field, model_validator

from remediator.config.common import Duration, Model
from remediator.config.names import SHARED_TOKEN_NAME, EnvName, Person
from remediator.parsing import whole_number


class BasicAuth(Model):
    """HTTP basic auth for the webhook, as Alertmanager's `basic_auth` sends it."""

    username: str
    password_env: str | None = None
    password_file: str | None = None

    @model_validator(mode="after")
    def _one_source(self) -> BasicAuth:
        if (self.password_env is None) == (self.password_file is None):
            raise ValueError("set exactly one of password_env or password_file")
        return self


class WebhookAuth(Model):
    """How Alertmanager authenticates: a bearer token or basic auth."""

    bearer_token_env: str | None = None
    bearer_token_file: str | None = None
    basic: BasicAuth | None = None

    @model_validator(mode="after")
    def _one_method(self) -> WebhookAuth:
        chosen = [self.bearer_token_env, self.bearer_token_file, self.basic]
        if sum(x is not None for x in chosen) != 1:
            raise ValueError("set exactly one of bearer_token_env, bearer_token_file or basic")
        return self


def parse_listen(listen: str) -> tuple[str, int]:
    """'127.0.0.1:9095' or '[::1]:9095' -> (host, port)."""
    host, sep, raw_port = listen.rpartition(":")
    port = whole_number(raw_port, 65535)
    if not sep or port is None:
        raise ValueError(f"{listen!r} is not HOST:PORT (a port from 0 to 65535)")
    return host.strip("[]") or "0.0.0.0", port


def _check_listen(listen: str) -> str:
    parse_listen(listen)
    return listen


class ServerConfig(Model):
    """The HTTP listener."""

    listen: Annotated[str, AfterValidator(_check_listen)] = "127.0.0.1:9095"
    max_body_bytes: int = Field(default=1_048_576, gt=0)
    webhook_auth: WebhookAuth
    # The shared admin token: every holder is one identity (`admin-token`) to approvals.
    admin_token_env: str | None = None
    # One admin token per person, {NAME: ENV_VAR}: NAME is who decides with that token.
    admin_tokens: dict[Person, EnvName] = Field(default_factory=dict)
    shutdown_grace: Duration = 30.0
    # Where operators reach this daemon; links in pages point here.
    external_url: str | None = None

    @model_validator(mode="after")
    def _one_token_per_person(self) -> ServerConfig:
        if SHARED_TOKEN_NAME in self.admin_tokens:
            raise ValueError(
                f"admin_tokens: {SHARED_TOKEN_NAME!r} is the shared token's identity"
                " (admin_token_env); name each token after its person"
            )
        envs = [*self.admin_tokens.values(), self.admin_token_env]
        for env in set(envs):
            if env is not None and envs.count(env) > 1:
                raise ValueError(
                    f"admin_tokens: {env} is named more than once; a token is one person's"
                )
        return self
