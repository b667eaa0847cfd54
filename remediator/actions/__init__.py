"""Remediation actions, one module per kind, behind the Action protocol."""

from __future__ import annotations

from collections.abc import Callable, Mapping

from remediator.actions.base import Action, Closeable, Outcome, Plan
from remediator.actions.firewall import BlockIpsAction, FirewallLockdownAction, RateLimitAction
from remediator.actions.http import HttpAction
from remediator.actions.notify import NotifyAction
from remediator.actions.rotate_logs import RotateLogsAction
from remediator.actions.script import ScriptAction
from remediator.actions.ssh import RestartServiceAction, SshAction
from remediator.actions.sshpool import SshPool

_SSH_RECIPES: tuple[Callable[[SshPool], Action], ...] = (
    SshAction,
    RestartServiceAction,
    RotateLogsAction,
    RateLimitAction,
    BlockIpsAction,
    FirewallLockdownAction,
)


def build_registry(
    pool: SshPool | None, environ: Mapping[str, str] | None = None
) -> dict[str, Action]:
    """The explicit registry of actions; SSH-based ones only when `ssh:` is configured.

    `environ` (default: os.environ) gives `script` its PATH and `http` its
    `headers_from_env` secrets. Call `close_actions` on shutdown.
    """
    local: list[Action] = [NotifyAction(), ScriptAction(environ), HttpAction(environ)]
    registry: dict[str, Action] = {action.name: action for action in local}
    if pool is not None:
        for action in (recipe(pool) for recipe in _SSH_RECIPES):
            registry[action.name] = action
    return registry


async def close_actions(registry: Mapping[str, Action]) -> None:
    """Release what actions hold (the `http` session); the SSH pool is closed on its own."""
    for action in registry.values():
        if isinstance(action, Closeable):
            await action.close()


__all__ = ["Action", "Outcome", "Plan", "SshPool", "build_registry", "close_actions"]
