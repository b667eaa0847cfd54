"""Remediation actions, one module per kind, behind the Action protocol."""

from __future__ import annotations

from remediator.actions.base import Action, Outcome, Plan
from remediator.actions.notify import NotifyAction
from remediator.actions.ssh import RestartServiceAction, SshAction
from remediator.actions.sshpool import SshPool


def build_registry(pool: SshPool | None) -> dict[str, Action]:
    """The explicit registry of actions; SSH-based ones only when `ssh:` is configured."""
    registry: dict[str, Action] = {"notify": NotifyAction()}
    if pool is not None:
        registry["ssh"] = SshAction(pool)
        registry["restart_service"] = RestartServiceAction(pool)
    return registry


__all__ = ["Action", "Outcome", "Plan", "SshPool", "build_registry"]
