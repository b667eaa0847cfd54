"""The `alertmanager:` section of remediator.yml and a rule's `silence:` option."""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import AfterValidator, BeforeValidator, Field, model_validator

from remediator.config.common import Duration, Model
from remediator.config.names import EnvName


def _check_url(url: str) -> str:
    if not url.startswith(("http://", "https://")) or len(url.split("://", 1)[1]) == 0:
        raise ValueError(f"{url!r} is not an http(s) URL of Alertmanager (http://HOST:9093)")
    return url.rstrip("/")


class AlertmanagerBasicAuth(Model):
    """Basic auth to Alertmanager's API, both parts read from the environment at start."""

    username_env: EnvName
    password_env: EnvName


class AlertmanagerConfig(Model):
    """Where remediator creates silences (API v2) and polls the silenced alerts."""

    url: Annotated[str, AfterValidator(_check_url)]
    bearer_token_env: EnvName | None = None
    basic_auth: AlertmanagerBasicAuth | None = None
    # Each API call's bound: a step never waits longer than this for its silence.
    timeout: Duration = Field(default=10.0, gt=0)
    # How often silences of incidents no longer automating are expired, and silenced
    # alerts are looked up (Alertmanager mutes remediator's own receiver too).
    poll: Duration = Field(default=15.0, gt=0)
    # An alert missing from an Alertmanager up for less than this is not taken as
    # resolved: one that restarted has lost its alerts until Prometheus re-sends them.
    min_uptime: Duration = 300.0

    @model_validator(mode="after")
    def _one_auth(self) -> AlertmanagerConfig:
        if self.bearer_token_env is not None and self.basic_auth is not None:
            raise ValueError("set at most one of bearer_token_env or basic_auth")
        return self


class SilenceSpec(Model):
    """A rule's `silence:`: mute Alertmanager's receivers for the alert while steps work."""

    # The silence's comment; by default it names the incident, the rule and the step.
    comment: str | None = None


def _silence_short_form(value: Any) -> Any:
    # `silence: true` is `silence: {}`; `silence: false` is no silence.
    if value is True:
        return {}
    if value is False:
        return None
    return value


SilenceOption = Annotated[
    SilenceSpec | None,
    BeforeValidator(_silence_short_form, json_schema_input_type=bool | SilenceSpec | None),
]
