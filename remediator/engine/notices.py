"""Queue Slack updates for an incident (its message in the channel, its thread, approvals).

Each call only adds outbox rows inside the caller's transaction; the outbox delivers them.
A pending update of the same message is not queued twice: delivery renders the current state.
"""

from __future__ import annotations

from remediator.actions.approval import policy_of
from remediator.config.policies import DEFAULT_POLICY
from remediator.engine.context import EngineContext
from remediator.store.base import HumanTx
from remediator.store.payloads import SlackEphemeral, SlackSync, SlackThread


async def sync_incident(
    ctx: EngineContext, tx: HumanTx, incident_id: int, now: float, *, create: bool = True
) -> None:
    """Post or update the incident's message; with `create=False` only if it was posted."""
    slack = ctx.config.file.slack
    if slack is None:
        return
    key = f"incident:{incident_id}"
    if not create and await tx.slack_message(key) is None:
        # Nothing posted yet: a queued first post (if any) will show the current state.
        return
    await tx.enqueue(slack.channel, SlackSync(key), incident_id, now, dedup_key=f"sync:{key}")
    ctx.outbox_ready.set()


async def thread_note(
    ctx: EngineContext, tx: HumanTx, incident_id: int, text: str, now: float
) -> None:
    """A line in the incident message's thread (the step log)."""
    slack = ctx.config.file.slack
    if slack is None:
        return
    await tx.enqueue(slack.channel, SlackThread(incident_id, text), incident_id, now)
    ctx.outbox_ready.set()


async def sync_approval(
    ctx: EngineContext, tx: HumanTx, approval_id: int, incident_id: int, now: float
) -> None:
    """Post or update an approval request (in its policy's channel)."""
    slack = ctx.config.file.slack
    if slack is None:
        return
    approval = await tx.approval(approval_id)
    name = policy_of(approval.command) if approval is not None else DEFAULT_POLICY
    policies = ctx.config.policies
    policy, default = policies.approval_policy(name), policies.approval_policy()
    channel = (policy and policy.channel) or (default and default.channel) or slack.channel
    key = f"approval:{approval_id}"
    await tx.enqueue(channel, SlackSync(key), incident_id, now, dedup_key=f"sync:{key}")
    ctx.outbox_ready.set()


async def ephemeral(
    ctx: EngineContext, tx: HumanTx, channel: str, user: str, text: str, now: float
) -> None:
    """A reply only one Slack user sees (a refused or redundant click)."""
    if ctx.config.file.slack is None or not channel:
        return
    await tx.enqueue(channel, SlackEphemeral(user, text), None, now)
    ctx.outbox_ready.set()
