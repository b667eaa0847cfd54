"""The Action protocol: plan (render, validate) first, then execute at most once."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

from remediator.config.models import Host, Model

BeforeSend = Callable[[], Awaitable[None]]


@dataclass(frozen=True)
class Plan:
    """Exactly what a step will do, rendered before anything connects."""

    action: str
    host: Host | None
    commands: tuple[tuple[str, ...], ...] = ()
    message: str | None = None

    def describe(self) -> dict[str, Any]:
        """A JSON-able description for the audit and the step record."""
        out: dict[str, Any] = {"action": self.action}
        if self.host is not None:
            out["host"] = self.host.name
            out["address"] = f"{self.host.address}:{self.host.port}"
        if self.commands:
            out["commands"] = [list(c) for c in self.commands]
        if self.message is not None:
            out["message"] = self.message
        return out


@dataclass(frozen=True)
class Outcome:
    """What happened once the command was sent."""

    ok: bool
    exit_status: int | None = None
    output: str = ""
    error: str | None = None
    details: dict[str, Any] = field(default_factory=dict)


class Action(Protocol):
    """A remediation action; `execute` calls `before_send` right before sending anything."""

    name: str
    needs_host: bool

    def plan(self, params: Model, context: dict[str, Any], host: Host | None) -> Plan:
        """Render and validate; raises TemplateError or ActionError, never connects."""
        ...

    async def execute(self, plan: Plan, before_send: BeforeSend) -> Outcome:
        """Carry out the plan; raises ActionError when it could not."""
        ...
