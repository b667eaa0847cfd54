"""`notify`: no action, only a message (rules that only page)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Self

from remediator.actions.base import BeforeSend, Outcome, Plan
from remediator.actions.params import NotifyParams
from remediator.actions.sshpool import SshPool
from remediator.config.models import Host, Model
from remediator.templates import render


class NotifyAction:
    """Records the rendered message; escalation delivers it."""

    name = "notify"
    params_model: type[Model] = NotifyParams
    needs_ssh = False
    always_needs_approval = False

    @classmethod
    def build(cls, pool: SshPool | None, environ: Mapping[str, str] | None) -> Self:
        """Needs nothing."""
        return cls()

    def plan(self, params: NotifyParams, context: dict[str, Any], host: Host | None) -> Plan:
        """Render the message."""
        return Plan(self.name, host, message=render(params.message, context))

    async def execute(self, plan: Plan, before_send: BeforeSend) -> Outcome:
        """Nothing to run."""
        await before_send()
        return Outcome(ok=True, output=plan.message or "")
