"""Approvals and acknowledgements: asked by the runner, decided from Slack, the API or the CLI.

Every decision is one write transaction: the vote, the approval's new state, the next
work row and the audit commit together, so a decision survives a restart and a second
click on a decided approval changes nothing.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

from remediator.config.durations import format_duration
from remediator.config.models import ApprovalPolicy, RuleSpec
from remediator.engine.context import EngineContext
from remediator.engine.escalation import free_target, hand_over, stop_chain
from remediator.engine.notices import sync_approval, sync_incident
from remediator.store.base import Tx
from remediator.store.records import (
    Approval,
    ApprovalState,
    EscalationState,
    Incident,
    State,
    WorkItem,
    WorkKind,
)

log = logging.getLogger(__name__)
APPROVE, DENY = "approve", "deny"


@dataclass(frozen=True)
class Outcome:
    """What a decision did; `status` is the HTTP status the admin API answers with."""

    status: int
    message: str
    incident_id: int | None = None
    state: str | None = None

    @property
    def changed(self) -> bool:
        """Whether the decision changed anything."""
        return self.status == 200


def policy(ctx: EngineContext) -> ApprovalPolicy | None:
    """The approval policy, if policies define one."""
    approvals = ctx.config.policies.approvals
    return approvals.default if approvals else None


async def request(
    ctx: EngineContext,
    tx: Tx,
    item: WorkItem,
    incident: Incident,
    action: str,
    command: Any,
    now: float,
) -> Approval | None:
    """Ask for approval of a step (once); None when no approval policy exists."""
    p = policy(ctx)
    if p is None:
        return None
    approval = await tx.create_approval(
        incident.id, item.step_index, action, command, p.required, now, now + p.timeout
    )
    await tx.finish_work(item.id, now, "awaiting_approval")
    await tx.schedule(WorkKind.APPROVAL_TIMEOUT, incident.id, item.step_index, approval.expires_at)
    await tx.update_incident(
        incident.id, now, state=State.AWAITING_APPROVAL, step_index=item.step_index
    )
    detail = {
        "step": item.step_index,
        "action": action,
        "approval": approval.id,
        "required": p.required,
        "approvers": p.approvers,
        "expires_at": approval.expires_at,
    }
    await tx.audit(incident.id, "approval_requested", detail, now)
    await sync_approval(ctx, tx, approval.id, incident.id, now)
    await sync_incident(ctx, tx, incident.id, now)
    return approval


async def _settled(ctx: EngineContext, tx: Tx, approval: Approval, now: float) -> None:
    await tx.cancel_work(approval.incident_id, now, [WorkKind.APPROVAL_TIMEOUT])
    await sync_approval(ctx, tx, approval.id, approval.incident_id, now)


async def decide(
    ctx: EngineContext,
    tx: Tx,
    approval_id: int,
    voter: str,
    decision: str,
    via: str,
    reason: str | None,
    now: float,
) -> Outcome:
    """Record one person's approve or deny."""
    p = policy(ctx)
    approval = await tx.approval(approval_id)
    if approval is None or p is None:
        return Outcome(404, f"approval {approval_id} does not exist")
    incident = await tx.incident(approval.incident_id)
    assert incident is not None  # approvals reference incidents
    if voter not in p.approvers:
        ctx.metrics.approvals.labels(result="refused").inc()
        detail = {
            "approval": approval.id,
            "by": voter,
            "via": via,
            "decision": decision,
            "reason": "not in the approval policy's approvers",
        }
        await tx.audit(incident.id, "approval_refused", detail, now)
        return Outcome(403, f"{voter} may not {decision}: not in the approvers", incident.id)
    if approval.state is not ApprovalState.PENDING:
        by = f" by {approval.decided_by}" if approval.decided_by else ""
        return Outcome(409, f"already {approval.state.value}{by}", incident.id, incident.state)
    if not await tx.add_vote(approval.id, voter, decision, via, now):
        return Outcome(409, f"{voter} has already voted on this approval", incident.id)
    rule = ctx.rules.by_name.get(incident.rule)
    if decision == DENY or rule is None:
        return await _deny(ctx, tx, approval, incident, rule, voter, via, reason, now)
    votes = await tx.votes(approval.id)
    approvers = sorted({v.voter for v in votes if v.decision == APPROVE})
    detail = {
        "approval": approval.id,
        "step": approval.step_index,
        "by": voter,
        "via": via,
        "approvals": len(approvers),
        "required": approval.required,
    }
    if len(approvers) < approval.required:
        await tx.audit(incident.id, "approval_vote", detail, now)
        await sync_approval(ctx, tx, approval.id, incident.id, now)
        need = approval.required - len(approvers)
        return Outcome(200, f"approval recorded; {need} more needed", incident.id, incident.state)
    await tx.decide_approval(approval.id, ApprovalState.APPROVED, ", ".join(approvers), reason, now)
    await _settled(ctx, tx, approval, now)
    await tx.schedule(WorkKind.RUN_STEP, incident.id, approval.step_index, now)
    await tx.update_incident(incident.id, now, state=State.PENDING)
    await tx.audit(incident.id, "approved", {**detail, "approvers": approvers}, now)
    await sync_incident(ctx, tx, incident.id, now)
    ctx.metrics.approvals.labels(result="approved").inc()
    ctx.work_ready.set()
    return Outcome(200, f"approved by {', '.join(approvers)}", incident.id, State.PENDING)


async def _deny(
    ctx: EngineContext,
    tx: Tx,
    approval: Approval,
    incident: Incident,
    rule: RuleSpec | None,
    by: str,
    via: str,
    reason: str | None,
    now: float,
) -> Outcome:
    await tx.decide_approval(approval.id, ApprovalState.DENIED, by, reason, now)
    await _settled(ctx, tx, approval, now)
    detail = {
        "approval": approval.id,
        "step": approval.step_index,
        "by": by,
        "via": via,
        "reason": reason,
    }
    await tx.audit(incident.id, "approval_denied", detail, now)
    ctx.metrics.approvals.labels(result="denied").inc()
    why = f"step {approval.step_index + 1} ({approval.action}) denied by {by}"
    if rule is not None:
        await hand_over(ctx, tx, incident, rule, why + (f": {reason}" if reason else ""), now)
    current = await tx.incident(incident.id)
    return Outcome(200, why, incident.id, current.state if current else None)


async def expire(ctx: EngineContext, tx: Tx, item: WorkItem, now: float) -> None:
    """An approval's timeout is due: apply `on_timeout` if nobody decided."""
    await tx.finish_work(item.id, now, "done")
    approval = await tx.approval_for(item.incident_id, item.step_index)
    incident = await tx.incident(item.incident_id)
    p = policy(ctx)
    if approval is None or approval.state is not ApprovalState.PENDING or incident is None:
        return
    rule = ctx.rules.by_name.get(incident.rule)
    waited = format_duration(now - approval.created_at)
    if p is not None and p.on_timeout == "deny":
        await _deny(
            ctx,
            tx,
            approval,
            incident,
            rule,
            "timeout",
            "timeout",
            f"nobody decided within {waited} (on_timeout: deny)",
            now,
        )
        return
    await tx.decide_approval(approval.id, ApprovalState.EXPIRED, "timeout", None, now)
    await _settled(ctx, tx, approval, now)
    await tx.audit(incident.id, "approval_expired", {"approval": approval.id, "after": waited}, now)
    ctx.metrics.approvals.labels(result="expired").inc()
    if rule is not None:
        why = (
            f"approval of step {approval.step_index + 1} ({approval.action}) expired after {waited}"
        )
        await hand_over(ctx, tx, incident, rule, why, now)


async def acknowledge(
    ctx: EngineContext, tx: Tx, incident_id: int, by: str, via: str, now: float
) -> Outcome:
    """A human takes over: automation and paging stop for this incident."""
    incident = await tx.incident(incident_id)
    if incident is None:
        return Outcome(404, f"incident {incident_id} does not exist")
    if not incident.is_open:
        return Outcome(
            409, f"incident {incident_id} is already {incident.state.value}", incident_id
        )
    esc = await tx.escalation(incident_id)
    chain = ctx.config.policies.escalations.get(esc.chain) if esc else None
    if chain is not None and chain.acknowledgers is not None and by not in chain.acknowledgers:
        refused = {"by": by, "via": via, "reason": "not in the chain's acknowledgers"}
        await tx.audit(incident_id, "ack_refused", refused, now)
        return Outcome(403, f"{by} may not acknowledge: not in the acknowledgers", incident_id)
    if incident.state is State.ACKNOWLEDGED:
        return Outcome(409, "already acknowledged", incident_id, incident.state)
    await stop_chain(tx, incident_id, EscalationState.ACKNOWLEDGED, by, now)
    cancelled = await tx.cancel_work(incident_id, now)
    for approval in await tx.approvals_of(incident_id):
        if approval.state is ApprovalState.PENDING:
            reason = f"incident acknowledged by {by}"
            await tx.decide_approval(approval.id, ApprovalState.CANCELLED, by, reason, now)
            await sync_approval(ctx, tx, approval.id, incident_id, now)
    await tx.update_incident(incident_id, now, state=State.ACKNOWLEDGED)
    await free_target(ctx, tx, incident, now)
    detail: dict[str, Any] = {
        "by": by,
        "via": via,
        "previous": incident.state.value,
        "cancelled_work": cancelled,
    }
    await tx.audit(incident_id, "acknowledged", detail, now)
    await sync_incident(ctx, tx, incident_id, now)
    log.info("incident acknowledged", extra={"incident": incident_id, "by": by})
    return Outcome(200, f"acknowledged by {by}", incident_id, State.ACKNOWLEDGED)


async def pending_approval(tx: Tx, incident_id: int) -> Approval | None:
    """The incident's approval still waiting for a decision (the API decides by incident)."""
    pending = [a for a in await tx.approvals_of(incident_id) if a.state is ApprovalState.PENDING]
    return pending[-1] if pending else None


async def decide_incident(
    ctx: EngineContext,
    tx: Tx,
    incident_id: int,
    decision: str,
    by: str,
    via: str,
    reason: str | None,
    now: float,
) -> Outcome:
    """`ack` an incident, or approve / deny the step it waits on (the API decides by incident)."""
    if decision == "ack":
        return await acknowledge(ctx, tx, incident_id, by, via, now)
    pending = await pending_approval(tx, incident_id)
    if pending is None:
        return Outcome(409, f"incident {incident_id} has no pending approval", incident_id)
    return await decide(ctx, tx, pending.id, by, decision, via, reason, now)
