"""`notify`: no action, only a message (rules that only page)."""

from __future__ import annotations

from typing import Any

from remediator.actions.base import BeforeSend, Outcome, Plan
from remediator.actions.params import NotifyParams
from remediator.config.models import Host, Model
from remediator.templates import render


class NotifyAction:
    """Records the rendered message; escalation delivers it."""

    name = "notify"
    needs_host = False

    def plan(self, params: Model, context: dict[str, Any], host: Host | None) -> Plan:
        """Render the message."""
        assert isinstance(params, NotifyParams)
        return Plan(self.name, host, message=render(params.message, context))

    async def execute(self, plan: Plan, before_send: BeforeSend) -> Outcome:
        """Nothing to run."""
        await before_send()
        return Outcome(ok=True, output=plan.message or "")
