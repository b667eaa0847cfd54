"""The Action protocol: plan (render, validate) first, then execute at most once."""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol, Self, runtime_checkable

from remediator.config.models import Host, Model
from remediator.errors import ActionError

if TYPE_CHECKING:  # params imports the config package, whose loader imports actions
    from remediator.actions.params import IpNetwork
    from remediator.actions.sshpool import SshPool

BeforeSend = Callable[[], Awaitable[None]]
OUTPUT_LIMIT = 8192
REDACTED = "<redacted>"
# Header and variable names whose values are credentials, never shown in the audit.
_SECRET_NAME = re.compile(r"auth|token|secret|api[-_]?key|password|passwd|cookie", re.IGNORECASE)


def clip_output(text: str) -> str:
    """Keep command output to OUTPUT_LIMIT characters for the store and the audit."""
    return text if len(text) <= OUTPUT_LIMIT else text[:OUTPUT_LIMIT] + "\n[truncated]"


def redact(values: Mapping[str, Any]) -> dict[str, Any]:
    """A copy with the values of secret-looking names (Authorization, X-Api-Key) hidden."""
    return {k: REDACTED if _SECRET_NAME.search(k) else v for k, v in values.items()}


@dataclass(frozen=True)
class Plan:
    """Exactly what a step will do, rendered before anything connects.

    `stdin` runs parallel to `commands` (None: no input); `request` is an HTTP call
    (method, url, headers, json, ...); `env` and `timeout_s` are for local commands;
    `blocks` lists what a firewall step will drop, for the engine's no-self-lockout check;
    `ok_exit` are the exit statuses of a command that count as success; `parts` are the
    plans of an `all:` step's parts (its action is `all`, it has no host).
    """

    action: str
    host: Host | None
    commands: tuple[tuple[str, ...], ...] = ()
    message: str | None = None
    stdin: tuple[str | None, ...] = ()
    request: dict[str, Any] | None = None
    env: dict[str, str] | None = None
    timeout_s: float | None = None
    blocks: tuple[IpNetwork, ...] = ()
    ok_exit: tuple[int, ...] = (0,)
    parts: tuple[Plan, ...] = ()

    @classmethod
    def together(cls, action: str, parts: tuple[Plan, ...]) -> Plan:
        """The plan of an `all:` step: its parts' plans, and all they block."""
        return cls(action, None, blocks=tuple(b for p in parts for b in p.blocks), parts=parts)

    def __post_init__(self) -> None:
        if self.stdin and len(self.stdin) != len(self.commands):
            raise ValueError("Plan.stdin must have one entry per command")
        for n, command in enumerate(self.commands, 1):
            if any("\0" in arg for arg in command):
                # argv travels as C strings (ssh's exec request, execve): NUL would cut it
                raise ActionError(f"refusing command {n}: an argument holds a NUL byte")

    def stdin_for(self, index: int) -> str | None:
        """The input of command `index`, if it has one."""
        return self.stdin[index] if self.stdin else None

    def describe(self) -> dict[str, Any]:
        """A JSON-able description for the audit and the step record; secrets redacted."""
        out: dict[str, Any] = {"action": self.action}
        if self.parts:
            out["parts"] = [part.describe() for part in self.parts]
        if self.host is not None:
            out["host"] = self.host.name
            out["address"] = f"{self.host.address}:{self.host.port}"
        if self.commands:
            out["commands"] = [list(c) for c in self.commands]
        if any(s is not None for s in self.stdin):
            out["stdin"] = list(self.stdin)
        if self.message is not None:
            out["message"] = self.message
        if self.request is not None:
            request = dict(self.request)
            if "headers" in request:
                request["headers"] = redact(request["headers"])
            out["request"] = request
        if self.env:
            out["env"] = redact(self.env)
        if self.timeout_s is not None:
            out["timeout_s"] = self.timeout_s
        if self.ok_exit != (0,):
            out["expect_exit"] = list(self.ok_exit)
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
    """A remediation action: one module, one line in the registry (actions/__init__.py).

    Its class says everything rules need to know of it: `params_model` parses a step's
    `params` once, when rules load (template strings stay as written until `plan` renders
    them per alert); `needs_ssh`: it logs into the target, so a step needs a target and the
    `ssh:` section; `always_needs_approval`: its steps wait for a human whatever the
    policy says. `build` makes the instance the daemon runs (None: not available here, as
    the SSH ones without `ssh:`); `execute` calls `before_send` right before sending anything.
    """

    name: str
    params_model: type[Model]
    needs_ssh: bool
    always_needs_approval: bool

    @classmethod
    def build(cls, pool: SshPool | None, environ: Mapping[str, str] | None) -> Self | None:
        """The instance to run, from what the daemon holds; None if it cannot run here."""
        ...

    # `params` is an instance of this action's own `params_model` (each plan() names it).
    def plan(self, params: Any, context: dict[str, Any], host: Host | None) -> Plan:
        """Render and validate; raises TemplateError or ActionError, never connects."""
        ...

    async def execute(self, plan: Plan, before_send: BeforeSend) -> Outcome:
        """Carry out the plan; raises ActionError when it could not."""
        ...


@runtime_checkable
class Closeable(Protocol):
    """An action holding a client (an HTTP session) that the daemon closes on shutdown."""

    async def close(self) -> None:
        """Release the client."""
        ...
