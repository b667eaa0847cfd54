"""Approvals and acknowledgements: asked by the runner, decided from Slack, the API or the CLI.

Every decision is one write transaction: the vote, the approval's new state, the next
work row and the audit commit together, so a decision survives a restart and a second
click on a decided approval changes nothing.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

from remediator.actions.approval import approval_command, policy_of
from remediator.actions.base import Plan
from remediator.config.durations import format_duration
from remediator.config.models import ApprovalPolicy, RuleSpec
from remediator.config.policies import DEFAULT_POLICY
from remediator.engine.context import EngineContext
from remediator.engine.decisions import Outcome, Result, Voter
from remediator.engine.escalation import cancel_approvals, free_target, hand_over, stop_chain
from remediator.engine.notices import sync_approval, sync_incident
from remediator.store.base import HumanTx, Tx
from remediator.store.events import (
    ApprovalExpired,
    ApprovalRequested,
    Event,
    PagingAcknowledged,
)
from remediator.store.records import (
    HANDED_OVER,
    Approval,
    ApprovalState,
    Escalation,
    EscalationState,
    Incident,
    State,
    WorkItem,
    WorkKind,
)

log = logging.getLogger(__name__)
APPROVE, DENY = "approve", "deny"
TIMEOUT = Voter.person("timeout", "timeout")


@dataclass(frozen=True)
class Asked:
    """A rendered step to be approved, under which approval policy."""

    plan: Plan
    policy: str

    @property
    def command(self) -> dict[str, Any]:
        """What the approvers see and approve (stored with the approval)."""
        return approval_command(self.plan.describe(), self.policy)


def policy(ctx: EngineContext, name: str = DEFAULT_POLICY) -> ApprovalPolicy | None:
    """The approval policy called `name`, if policies define it."""
    return ctx.config.policies.approval_policy(name)


async def request(
    ctx: EngineContext, tx: Tx, item: WorkItem, incident: Incident, asked: Asked, now: float
) -> Approval | None:
    """Ask the step's policy for approval (once); None when that policy does not exist."""
    p = policy(ctx, asked.policy)
    if p is None:
        return None
    action = asked.plan.action
    approval = await tx.create_approval(
        incident.id, item.step_index, action, asked.command, p.required, now, now + p.timeout
    )
    await tx.finish_work(item.id, now, "awaiting_approval")
    await tx.schedule(WorkKind.APPROVAL_TIMEOUT, incident.id, item.step_index, approval.expires_at)
    await tx.update_incident(
        incident.id, now, state=State.AWAITING_APPROVAL, step_index=item.step_index
    )
    requested = ApprovalRequested(
        item.step_index,
        action,
        approval.id,
        p.required,
        p.approvers,
        approval.expires_at,
        asked.policy,
    )
    await tx.audit(incident.id, requested, now)
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
    voter: Voter,
    decision: str,
    reason: str | None,
    now: float,
) -> Outcome:
    """Record one person's approve or deny (an approver of the step's policy)."""
    asked = await tx.approval(approval_id)
    if asked is None or ctx.config.policies.approvals is None:
        return Outcome(Result.UNKNOWN_APPROVAL, f"approval {approval_id} does not exist")
    incident = await tx.incident(asked.incident_id)
    assert incident is not None  # approvals reference incidents
    # Read again under the incident's lock: another replica may have decided it meanwhile.
    approval = await tx.approval(approval_id)
    assert approval is not None
    name = policy_of(approval.command)
    p = policy(ctx, name)
    if p is None or voter.name not in p.approvers:
        ctx.metrics.approvals.labels(result="refused").inc()
        gone = f"approval policy {name!r} is no longer in policies"
        detail = {
            "approval": approval.id,
            **voter.detail(),
            "decision": decision,
            "reason": gone if p is None else "not in the approval policy's approvers",
        }
        if name != DEFAULT_POLICY:
            detail["policy"] = name
        await tx.audit(incident.id, Event("approval_refused", detail), now)
        of = "" if name == DEFAULT_POLICY else f" of policy {name}"
        why = gone if p is None else f"not in the approvers{of}"
        why = f"{voter.name} may not {decision}: {why}"
        return Outcome(Result.NOT_AN_APPROVER, why, incident.id)
    if approval.state is not ApprovalState.PENDING:
        by = f" by {approval.decided_by}" if approval.decided_by else ""
        why = f"already {approval.state.value}{by}"
        return Outcome(Result.ALREADY_DECIDED, why, incident.id, incident.state)
    if not await tx.add_vote(approval.id, voter.key, decision, voter.via, now):
        why = f"{voter.key} has already voted on this approval"
        if voter.key != voter.name:
            why += (
                " (the shared admin token is one person, whoever holds it: give each"
                " approver a token of their own in server.admin_tokens)"
            )
        return Outcome(Result.ALREADY_VOTED, why, incident.id, incident.state)
    rule = ctx.rules.by_name.get(incident.rule)
    if decision == DENY or rule is None:
        return await _deny(ctx, tx, approval, incident, rule, voter, reason, now)
    return await _count(ctx, tx, approval, incident, voter, reason, now)


async def _count(
    ctx: EngineContext,
    tx: Tx,
    approval: Approval,
    incident: Incident,
    voter: Voter,
    reason: str | None,
    now: float,
) -> Outcome:
    """An approve vote is in: approved once `required` different people approved."""
    votes = await tx.votes(approval.id)
    approvers = sorted({v.voter for v in votes if v.decision == APPROVE})
    detail = {
        "approval": approval.id,
        "step": approval.step_index,
        **voter.detail(),
        "approvals": len(approvers),
        "required": approval.required,
    }
    if len(approvers) < approval.required:
        await tx.audit(incident.id, Event("approval_vote", detail), now)
        await sync_approval(ctx, tx, approval.id, incident.id, now)
        need = approval.required - len(approvers)
        why = f"approval recorded; {need} more needed"
        return Outcome(Result.VOTE_RECORDED, why, incident.id, incident.state)
    await tx.decide_approval(approval.id, ApprovalState.APPROVED, ", ".join(approvers), reason, now)
    await _settled(ctx, tx, approval, now)
    await tx.schedule(WorkKind.RUN_STEP, incident.id, approval.step_index, now)
    await tx.update_incident(incident.id, now, state=State.PENDING)
    await tx.audit(incident.id, Event("approved", {**detail, "approvers": approvers}), now)
    await sync_incident(ctx, tx, incident.id, now)
    ctx.metrics.approvals.labels(result="approved").inc()
    ctx.work_ready.set()
    shown = ", ".join(voter.shown if a == voter.key else a for a in approvers)
    return Outcome(Result.APPROVED, f"approved by {shown}", incident.id, State.PENDING)


async def _deny(
    ctx: EngineContext,
    tx: Tx,
    approval: Approval,
    incident: Incident,
    rule: RuleSpec | None,
    voter: Voter,
    reason: str | None,
    now: float,
) -> Outcome:
    await tx.decide_approval(approval.id, ApprovalState.DENIED, voter.shown, reason, now)
    await _settled(ctx, tx, approval, now)
    detail = {
        "approval": approval.id,
        "step": approval.step_index,
        **voter.detail(),
        "reason": reason,
    }
    await tx.audit(incident.id, Event("approval_denied", detail), now)
    ctx.metrics.approvals.labels(result="denied").inc()
    why = f"step {approval.step_index + 1} ({approval.action}) denied by {voter.shown}"
    if rule is not None:
        await hand_over(ctx, tx, incident, rule, why + (f": {reason}" if reason else ""), now)
    current = await tx.incident(incident.id)
    return Outcome(Result.DENIED, why, incident.id, current.state if current else None)


async def expire(ctx: EngineContext, tx: Tx, item: WorkItem, now: float) -> None:
    """An approval's timeout is due: apply `on_timeout` if nobody decided."""
    # The incident first, as every decision on it does (a click, an ack, a resolve lock it,
    # then its work rows): the other order deadlocked with them, and the approval read
    # before the lock could be a decision another replica had just committed.
    incident = await tx.incident(item.incident_id)
    approval = await tx.approval_for(item.incident_id, item.step_index)
    await tx.finish_work(item.id, now, "done")
    if approval is None or approval.state is not ApprovalState.PENDING or incident is None:
        return
    p = policy(ctx, policy_of(approval.command))
    rule = ctx.rules.by_name.get(incident.rule)
    waited = format_duration(now - approval.created_at)
    if p is not None and p.on_timeout == "deny":
        why = f"nobody decided within {waited} (on_timeout: deny)"
        await _deny(ctx, tx, approval, incident, rule, TIMEOUT, why, now)
        return
    await tx.decide_approval(approval.id, ApprovalState.EXPIRED, "timeout", None, now)
    await _settled(ctx, tx, approval, now)
    await tx.audit(incident.id, ApprovalExpired(approval.id, waited), now)
    ctx.metrics.approvals.labels(result="expired").inc()
    if rule is not None:
        why = (
            f"approval of step {approval.step_index + 1} ({approval.action}) expired after {waited}"
        )
        await hand_over(ctx, tx, incident, rule, why, now)


async def acknowledge(
    ctx: EngineContext, tx: Tx, incident_id: int, voter: Voter, now: float
) -> Outcome:
    """A human takes over: automation and paging stop for this incident."""
    incident = await tx.incident(incident_id)
    if incident is None:
        return Outcome(Result.UNKNOWN_INCIDENT, f"incident {incident_id} does not exist")
    if not incident.is_open:
        why = f"incident {incident_id} is already {incident.state.value}"
        return Outcome(Result.ALREADY_DECIDED, why, incident_id, incident.state)
    esc = await tx.escalation(incident_id)
    chain = ctx.config.policies.escalations.get(esc.chain) if esc else None
    allowed = chain.acknowledgers if chain is not None else None
    if allowed is not None and voter.name not in allowed:
        refused = {**voter.detail(), "reason": "not in the chain's acknowledgers"}
        await tx.audit(incident_id, Event("ack_refused", refused), now)
        why = f"{voter.name} may not acknowledge: not in the acknowledgers"
        return Outcome(Result.NOT_AN_ACKNOWLEDGER, why, incident_id)
    rule = ctx.rules.by_name.get(incident.rule)
    automating = incident.state not in HANDED_OVER
    if esc is not None and rule is not None and rule.page_at_start and automating:
        return await _stop_paging(ctx, tx, incident, esc, voter, now)
    if incident.state is State.ACKNOWLEDGED:
        return Outcome(Result.ALREADY_DECIDED, "already acknowledged", incident_id, incident.state)
    by = voter.shown
    await stop_chain(tx, incident_id, EscalationState.ACKNOWLEDGED, by, now)
    cancelled = await tx.cancel_work(incident_id, now)
    await cancel_approvals(ctx, tx, incident_id, f"incident acknowledged by {by}", now, by)
    await tx.update_incident(incident_id, now, state=State.ACKNOWLEDGED)
    await free_target(ctx, tx, incident, now)
    detail: dict[str, Any] = {
        **voter.detail(),
        "previous": incident.state.value,
        "cancelled_work": cancelled,
    }
    await tx.audit(incident_id, Event("acknowledged", detail), now)
    await sync_incident(ctx, tx, incident_id, now)
    log.info("incident acknowledged", extra={"incident": incident_id, "by": by})
    return Outcome(Result.ACKNOWLEDGED, f"acknowledged by {by}", incident_id, State.ACKNOWLEDGED)


async def _stop_paging(
    ctx: EngineContext, tx: Tx, incident: Incident, esc: Escalation, voter: Voter, now: float
) -> Outcome:
    """`page_at_start` acknowledged while automation runs: the chain stops, nothing else.

    A pending approval stays decidable and a running or scheduled step goes on; the
    incident keeps its state. If automation gives up later, the acknowledger has it.
    """
    if esc.state is not EscalationState.ACTIVE:
        who = f" by {esc.stopped_by}" if esc.stopped_by else ""
        why = f"paging already {esc.state.value}{who}; automation goes on"
        return Outcome(Result.ALREADY_DECIDED, why, incident.id, incident.state)
    by = voter.shown
    await stop_chain(tx, incident.id, EscalationState.ACKNOWLEDGED, by, now)
    d = voter.detail()
    stopped = PagingAcknowledged(d["by"], d["via"], esc.chain, incident.state.value, d.get("as"))
    await tx.audit(incident.id, stopped, now)
    await sync_incident(ctx, tx, incident.id, now)
    log.info("paging acknowledged", extra={"incident": incident.id, "by": by})
    why = f"paging acknowledged by {by}; automation goes on"
    return Outcome(Result.ACKNOWLEDGED, why, incident.id, incident.state)


async def pending_approval(tx: HumanTx, incident_id: int) -> Approval | None:
    """The incident's approval still waiting for a decision (the API decides by incident)."""
    pending = [a for a in await tx.approvals_of(incident_id) if a.state is ApprovalState.PENDING]
    return pending[-1] if pending else None


async def decide_incident(
    ctx: EngineContext,
    tx: Tx,
    incident_id: int,
    decision: str,
    voter: Voter,
    reason: str | None,
    now: float,
) -> Outcome:
    """`ack` an incident, or approve / deny the step it waits on (the API decides by incident)."""
    if decision == "ack":
        return await acknowledge(ctx, tx, incident_id, voter, now)
    incident = await tx.incident(incident_id)
    if incident is None:
        return Outcome(Result.UNKNOWN_INCIDENT, f"incident {incident_id} does not exist")
    pending = await pending_approval(tx, incident_id)
    if pending is None:
        why = f"incident {incident_id} has no pending approval"
        return Outcome(Result.NOTHING_WAITING, why, incident_id, incident.state)
    return await decide(ctx, tx, pending.id, voter, decision, reason, now)
