"""Remediation actions, one module per kind, behind the Action protocol."""

from __future__ import annotations

from collections.abc import Mapping

from remediator.actions.base import Action, Closeable, Outcome, Plan
from remediator.actions.firewall import BlockIpsAction, FirewallLockdownAction, RateLimitAction
from remediator.actions.http import HttpAction
from remediator.actions.notify import NotifyAction
from remediator.actions.rotate_logs import RotateLogsAction
from remediator.actions.script import ScriptAction
from remediator.actions.ssh import RestartServiceAction, SshAction
from remediator.actions.sshpool import SshPool

# The registry: every action, by name. A new action is its module and one line here.
ACTIONS: dict[str, type[Action]] = {
    kind.name: kind
    for kind in (
        NotifyAction,
        ScriptAction,
        HttpAction,
        SshAction,
        RestartServiceAction,
        RotateLogsAction,
        RateLimitAction,
        BlockIpsAction,
        FirewallLockdownAction,
    )
}


def build_registry(
    pool: SshPool | None, environ: Mapping[str, str] | None = None
) -> dict[str, Action]:
    """The actions this daemon can run; those over SSH only when `ssh:` is configured.

    `environ` (default: os.environ) gives `script` its PATH and `http` its
    `headers_from_env` secrets. Call `close_actions` on shutdown.
    """
    built = {name: kind.build(pool, environ) for name, kind in ACTIONS.items()}
    return {name: action for name, action in built.items() if action is not None}


async def close_actions(registry: Mapping[str, Action]) -> None:
    """Release what actions hold (the `http` session); the SSH pool is closed on its own."""
    for action in registry.values():
        if isinstance(action, Closeable):
            await action.close()


__all__ = ["ACTIONS", "Action", "Outcome", "Plan", "SshPool", "build_registry", "close_actions"]
