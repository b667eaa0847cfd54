"""`ssh` and `restart_service`: commands on an inventory host over SSH."""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any, Self

from remediator.actions.base import BeforeSend, Outcome, Plan
from remediator.actions.params import RestartServiceParams, SshParams
from remediator.actions.sshpool import CommandResult, SshPool
from remediator.config.models import Host, Model
from remediator.errors import ActionError
from remediator.templates import render

# A systemd unit name (`\x2d` escapes included); not an option, so not starting with `-`.
_UNIT = re.compile(r"[A-Za-z0-9@._:\\][A-Za-z0-9@._:\\-]{0,255}")
# `only_if_inactive`: a fixed script; the unit is its argument `$1`, never part of its text.
# It says on stdout (the step's output, in the audit) whether it restarted, and from
# which state; a failed restart is its exit status.
RESTART_IF_INACTIVE = (
    's=$(systemctl is-active "$1"); '
    'if [ "$s" = active ]; then printf \'%s is active: not restarted\\n\' "$1"; '
    'else systemctl restart "$1" && printf \'%s was %s: restarted\\n\' "$1" "${s:-unknown}"; fi'
)


def need_host(action: str, host: Host | None) -> Host:
    """The target host, or an ActionError saying the action needs one."""
    if host is None:
        raise ActionError(f"{action} needs a target host")
    return host


async def run_commands(pool: SshPool, plan: Plan, before_send: BeforeSend) -> Outcome:
    """Connect, mark the step executing, then run each command until one fails."""
    host = need_host(plan.action, plan.host)
    conn = await pool.connection(host)
    await before_send()
    results: list[CommandResult] = []
    for index, argv in enumerate(plan.commands):
        result = await pool.run(conn, argv, host, input=plan.stdin_for(index))
        results.append(result)
        if result.exit_status not in plan.ok_exit:
            break
    last = results[-1]
    output = "\n".join(r.stdout + r.stderr for r in results).strip()
    ok = last.exit_status in plan.ok_exit and len(results) == len(plan.commands)
    error = (
        None if ok else f"`{' '.join(plan.commands[len(results) - 1])}` exited {last.exit_status}"
    )
    return Outcome(ok=ok, exit_status=last.exit_status, output=output, error=error)


class SshRecipe:
    """Base of the actions that run their plan's commands on the target over SSH."""

    name: str
    needs_ssh = True
    always_needs_approval = False

    def __init__(self, pool: SshPool) -> None:
        self.pool = pool

    @classmethod
    def build(cls, pool: SshPool | None, environ: Mapping[str, str] | None) -> Self | None:
        """Over the daemon's SSH pool; None without the `ssh:` section."""
        return None if pool is None else cls(pool)

    async def execute(self, plan: Plan, before_send: BeforeSend) -> Outcome:
        """Connect, then run each command in turn until one fails."""
        return await run_commands(self.pool, plan, before_send)


class SshAction(SshRecipe):
    """Run argv on the target; templates render per element, never re-split."""

    name = "ssh"
    params_model: type[Model] = SshParams

    def plan(self, params: SshParams, context: dict[str, Any], host: Host | None) -> Plan:
        """Render each argv element."""
        argv = tuple(render(a, context) for a in params.argv)
        host = need_host(self.name, host)
        return Plan(self.name, host, commands=(argv,), ok_exit=tuple(params.expect_exit))


class RestartServiceAction(SshRecipe):
    """`systemctl restart S` (with `only_if_inactive`: unless S is active), then
    `systemctl is-active S`."""

    name = "restart_service"
    params_model: type[Model] = RestartServiceParams

    def plan(
        self, params: RestartServiceParams, context: dict[str, Any], host: Host | None
    ) -> Plan:
        """Render and check the unit name."""
        service = render(params.service, context)
        if not _UNIT.fullmatch(service):
            raise ActionError(f"refusing service name {service!r}: not a systemd unit name")
        restart: tuple[str, ...] = ("systemctl", "restart", service)
        if params.only_if_inactive:
            restart = ("sh", "-c", RESTART_IF_INACTIVE, "sh", service)
        commands = (restart, ("systemctl", "is-active", service))
        return Plan(self.name, need_host(self.name, host), commands=commands)
