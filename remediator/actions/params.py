"""Parameter models of the built-in actions, checked when rules load."""

from __future__ import annotations

from pydantic import Field

from remediator.config.models import Model, TemplateStr


class SshParams(Model):
    """`ssh`: run argv on the target, each element shell-quoted."""

    argv: list[TemplateStr] = Field(min_length=1)


class RestartServiceParams(Model):
    """`restart_service`: systemctl restart, then is-active."""

    service: TemplateStr


class NotifyParams(Model):
    """`notify`: no action, only a message."""

    message: TemplateStr


ACTION_PARAMS: dict[str, type[Model]] = {
    "ssh": SshParams,
    "restart_service": RestartServiceParams,
    "notify": NotifyParams,
}

# Actions that log into the target over SSH: they need a target and the `ssh:` section.
SSH_ACTIONS = frozenset({"ssh", "restart_service"})
