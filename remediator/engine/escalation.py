"""Hand-over from automation to humans: escalation chains with durable timers.

A chain's steps notify at `after` from the chain's start; `repeat: N` runs the whole
chain N more times, each cycle one period later (the last step's `after` plus the ack
target of the severity with the chain's name, or 5 minutes). Each step is a work row
(kind `escalate`), so a restart neither forgets nor doubles a page. Acknowledge or
resolve stops the chain. A rule's `page_at_start` starts its chain when the incident
opens; a hand-over then pages no second chain (one per incident).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

from remediator.actions.params import is_template
from remediator.config.models import EscalationChain, RuleSpec
from remediator.engine.context import EngineContext
from remediator.engine.guards import GLOBAL, group_scope, target_scope
from remediator.engine.notices import sync_approval, sync_incident
from remediator.errors import TemplateError
from remediator.notify.text import one_line
from remediator.rules import alert_context, check_require
from remediator.store.base import GuardTx, HumanTx, Tx
from remediator.store.events import (
    ChainGone,
    EscalateFallback,
    EscalationFinished,
    EscalationNotified,
    EscalationStarted,
    EscalationStopped,
    Exhausted,
    HandedToAcknowledger,
    NotEscalated,
)
from remediator.store.payloads import Email, OutboxPayload, SlackPost
from remediator.store.records import (
    ACTIVE_STATES,
    HANDED_OVER,
    LOCK_STATES,
    ApprovalState,
    Escalation,
    EscalationState,
    Incident,
    State,
    WorkItem,
    WorkKind,
)
from remediator.templates import render

log = logging.getLogger(__name__)
Wake = tuple[list[str] | None, str]  # the guards (None: any) whose holds of a scope to wake
DEFAULT_CYCLE_GAP_S = 300.0
# Automation's own timers; the chain's timers survive a hand-over.
AUTOMATION_WORK = [WorkKind.RUN_STEP, WorkKind.VERIFY_TIMEOUT, WorkKind.APPROVAL_TIMEOUT]


def step_offset(ctx: EngineContext, name: str, chain: EscalationChain, position: int) -> float:
    """Seconds from the chain's start to its `position`-th notification (repeats unrolled)."""
    cycle, index = divmod(position, len(chain.steps))
    severity = ctx.config.policies.severities.get(name)
    period = chain.steps[-1].after + (severity.ack if severity else DEFAULT_CYCLE_GAP_S)
    return cycle * period + chain.steps[index].after


def chain_for(
    ctx: EngineContext, rule: RuleSpec, incident: Incident
) -> tuple[str | None, EscalateFallback | None]:
    """The chain this incident pages, and why the fallback does when it does.

    A templated `escalate:` renders over hostile labels: what it renders is only looked
    up among the configured chains, never used as anything else.
    """
    chains = ctx.config.policies.escalations
    if rule.escalate is None or not is_template(rule.escalate):
        return rule.escalate, None
    # Labels that fail the rule's `require:` are not trusted to pick the chain either.
    why = check_require(rule, incident.labels)
    if why is None:
        try:
            rendered = render(rule.escalate, alert_context(incident.labels, incident.annotations))
        except TemplateError as exc:
            why = str(exc)
        else:
            if rendered in chains:
                return rendered, None
            why = f"{rule.escalate!r} rendered {one_line(rendered, 100)!r}, which is not a chain"
    else:
        why = f"labels that fail require: do not pick the chain ({why})"
    fallback = rule.escalate_fallback
    return fallback, EscalateFallback(fallback, why) if fallback is not None else None


async def start_chain(
    ctx: EngineContext, tx: Tx, incident: Incident, rule: RuleSpec, reason: str, now: float
) -> bool:
    """Start the rule's chain (once per incident); False when there is none to start."""
    chain, fallback = chain_for(ctx, rule, incident)
    if chain is None or chain not in ctx.config.policies.escalations:
        return False
    if not await tx.start_escalation(incident.id, chain, reason, now):
        return True  # already paging (for example since automation was paused)
    await tx.schedule(WorkKind.ESCALATE, incident.id, 0, now)
    if fallback is not None:
        await tx.audit(incident.id, fallback, now)
    await tx.audit(incident.id, EscalationStarted(chain, reason), now)
    ctx.work_ready.set()
    log.warning(
        "escalating",
        extra={
            "incident": incident.id,
            "rule": rule.name,
            "chain": chain,
            "reason": reason,
        },
    )
    return True


async def hand_over(
    ctx: EngineContext, tx: Tx, incident: Incident, rule: RuleSpec, reason: str, now: float
) -> None:
    """Stop automating this incident and page the rule's escalation chain."""
    await tx.cancel_work(incident.id, now, AUTOMATION_WORK)
    chain, _ = chain_for(ctx, rule, incident)  # the chain paged, not the rule's template
    await tx.audit(incident.id, Exhausted(reason, chain), now)
    esc = await tx.escalation(incident.id)
    if esc is not None and esc.state is EscalationState.ACKNOWLEDGED:
        # A `page_at_start` chain acknowledged while automation ran: whoever acknowledged
        # it has the incident now; no second page.
        await tx.audit(incident.id, HandedToAcknowledger(esc.stopped_by, esc.chain), now)
        paging, state = True, State.ACKNOWLEDGED
    else:
        paging = await start_chain(ctx, tx, incident, rule, reason, now)
        state = State.ESCALATING if paging else State.EXHAUSTED
    if not paging:
        why = (
            "the rule names no escalation chain (`escalate:`)"
            if chain is None
            else f"escalation chain {chain!r} is not in the policies (removed by a reload?)"
        )
        await tx.audit(incident.id, NotEscalated(why), now)
    await tx.update_incident(incident.id, now, state=state)
    await cancel_approvals(ctx, tx, incident.id, "automation handed the incident over", now)
    await sync_incident(ctx, tx, incident.id, now)
    await free_target(ctx, tx, incident, now)


async def cancel_approvals(
    ctx: EngineContext, tx: HumanTx, incident_id: int, why: str, now: float, by: str = ""
) -> None:
    """Cancel the incident's pending approvals: a late click must not run a step."""
    for approval in await tx.approvals_of(incident_id):
        if approval.state is ApprovalState.PENDING:
            await tx.decide_approval(approval.id, ApprovalState.CANCELLED, by, why, now)
            await sync_approval(ctx, tx, approval.id, incident_id, now)


async def free_target(
    ctx: EngineContext, tx: GuardTx, incident: Incident, now: float, *, closing: bool = False
) -> None:
    """`incident` (as it was) let go of its target, or, `closing`, of its group slot (held
    however long it was handed over): the oldest step each freed scope holds looks again
    now, the others stay held (one slot frees, one step may take it)."""
    if incident.target is None:
        return
    if closing:
        await _wake(ctx, tx, _target_and_groups(ctx, incident.target), now)
    elif incident.state in LOCK_STATES:
        await _wake(ctx, tx, _target_and_groups(ctx, incident.target)[:1], now)


async def step_ended(ctx: EngineContext, tx: GuardTx, incident: Incident, now: float) -> None:
    """A step of `incident` stopped running: a slot of `max_concurrent_actions` is free,
    and, its incident closed or handed over meanwhile, its target and group slots too."""
    scopes: list[Wake] = []
    if ctx.config.policies.safety.max_concurrent_actions:
        scopes.append((["max_concurrent_actions"], GLOBAL))
    if incident.target is not None and incident.state not in ACTIVE_STATES:
        scopes.extend(_target_and_groups(ctx, incident.target))
    await _wake(ctx, tx, scopes, now)


def _target_and_groups(ctx: EngineContext, target: str) -> list[Wake]:
    """The scopes an incident on `target` frees when it closes: the target's lock first,
    then each limited group's slot."""
    freed: list[Wake] = [(["target_lock"], target_scope(target))]
    freed += [(["group"], group_scope(g)) for g in ctx.guards.limited_groups(target)]
    return freed


async def pass_on(ctx: EngineContext, tx: GuardTx, scope: str | None, now: float) -> None:
    """A step woken for a slot of `scope` will not take it (held by another scope, timed
    out, refused): the next step that scope holds looks again instead."""
    if scope is not None:
        await _wake(ctx, tx, [(None, scope)], now)


async def wake_each_scope(ctx: EngineContext, tx: GuardTx, now: float) -> int:
    """The net under the wakes: the oldest step each guard scope holds looks again (one
    per scope, whatever the number of steps it holds); one that passes wakes the next."""
    woken = 0
    for scope in await tx.held_scopes():
        await tx.lock_scopes([scope])  # one at a time: never two locks out of order
        woken += await tx.wake_held(None, now, scope=scope, limit=1)
    if woken:
        ctx.work_ready.set()
    return woken


async def _wake(ctx: EngineContext, tx: GuardTx, scopes: Sequence[Wake], now: float) -> None:
    """Wake the oldest hold of each scope, in the scopes' turn (lock_scopes): a step whose
    guards another replica is checking in that scope right now is held (its transaction
    commits) before this reads it, so the wake is never lost to that race."""
    await tx.lock_scopes([scope for _, scope in scopes])
    woken = 0
    for guards, scope in scopes:
        woken += await tx.wake_held(guards, now, scope=scope, limit=1)
    if woken:
        ctx.work_ready.set()


async def hand_over_in(
    ctx: EngineContext, tx: Tx, incident_id: int, reason: str, now: float
) -> None:
    """Hand an open incident still in automation's charge to humans (after a poison item)."""
    incident = await tx.incident(incident_id)
    if incident is None or not incident.is_open or incident.state in HANDED_OVER:
        return  # closed, or humans already have it (the chain pages on)
    rule = ctx.rules.by_name.get(incident.rule)
    if rule is None:
        # No chain to page through; automation still stops, as in hand_over.
        await tx.cancel_work(incident.id, now, AUTOMATION_WORK)
        why = f"{reason}; its rule {incident.rule!r} is gone"
        await tx.audit(incident.id, NotEscalated(why), now)
        await tx.update_incident(incident.id, now, state=State.EXHAUSTED)
        await cancel_approvals(ctx, tx, incident.id, "automation handed the incident over", now)
        await sync_incident(ctx, tx, incident.id, now)
        await free_target(ctx, tx, incident, now)
        return
    await hand_over(ctx, tx, incident, rule, reason, now)


async def page_now(
    ctx: EngineContext, tx: Tx, incident: Incident, rule: RuleSpec, reason: str, now: float
) -> None:
    """Tell humans at once while the step stays pending (automation paused or in a window)."""
    await start_chain(ctx, tx, incident, rule, f"{reason} (automation pending)", now)
    await sync_incident(ctx, tx, incident.id, now)


async def run_step(ctx: EngineContext, tx: Tx, item: WorkItem, now: float) -> None:
    """A due chain step: queue its notifications, schedule the next one."""
    # The incident first, as an ack or a resolve locks it before the chain and its work
    # rows: a page then waits for an ack being recorded, and reads the chain stopped.
    await tx.incident(item.incident_id)
    esc = await tx.escalation(item.incident_id)
    await tx.finish_work(item.id, now, "done")
    if esc is None or esc.state is not EscalationState.ACTIVE:
        return
    chain = ctx.config.policies.escalations.get(esc.chain)
    if chain is None:
        gone = ChainGone(esc.chain, "the chain is no longer in policies")
        await tx.audit(item.incident_id, gone, now)
        await tx.stop_escalation(item.incident_id, EscalationState.FINISHED, None, now)
        return
    n = len(chain.steps)
    cycle, index = divmod(item.step_index, n)
    position = f"escalation {esc.chain}: step {index + 1} of {n}" + (
        f", repeat {cycle} of {chain.repeat}" if cycle else ""
    )
    for target in chain.steps[index].notify:
        kind, _, to = target.partition(":")
        payload: OutboxPayload = (
            Email(incident_id=item.incident_id, reason=esc.reason, position=position)
            if kind == "email"
            else SlackPost(item.incident_id, esc.reason, position)
        )
        await tx.enqueue(
            to,
            payload,
            item.incident_id,
            now,
            dedup_key=f"page:{item.incident_id}:{item.step_index}:{target}",
        )
    ctx.outbox_ready.set()
    notified = EscalationNotified(esc.chain, index, cycle, list(chain.steps[index].notify))
    await tx.audit(item.incident_id, notified, now)
    await _schedule_after(ctx, tx, item, esc, chain, now)


async def schedule_next(ctx: EngineContext, tx: Tx, item: WorkItem, now: float) -> None:
    """The chain step after `item`'s (whose own run failed): the chain pages on."""
    esc = await tx.escalation(item.incident_id)
    chain = ctx.config.policies.escalations.get(esc.chain) if esc is not None else None
    if esc is not None and chain is not None and esc.state is EscalationState.ACTIVE:
        await _schedule_after(ctx, tx, item, esc, chain, now)


async def _schedule_after(
    ctx: EngineContext, tx: Tx, item: WorkItem, esc: Escalation, chain: EscalationChain, now: float
) -> None:
    nxt = item.step_index + 1
    if nxt < len(chain.steps) * (1 + chain.repeat):
        due = esc.started_at + step_offset(ctx, esc.chain, chain, nxt)
        await tx.schedule(WorkKind.ESCALATE, item.incident_id, nxt, max(due, now))
    else:
        await tx.stop_escalation(item.incident_id, EscalationState.FINISHED, None, now)
        await tx.audit(item.incident_id, EscalationFinished(esc.chain), now)


async def stop_chain(
    tx: Tx, incident_id: int, state: EscalationState, by: str | None, now: float
) -> bool:
    """Stop an incident's chain (acknowledged or resolved) and its pending timers."""
    stopped = await tx.stop_escalation(incident_id, state, by, now)
    await tx.cancel_work(incident_id, now, [WorkKind.ESCALATE])
    if stopped:
        await tx.audit(incident_id, EscalationStopped(state.value, by), now)
    return stopped
